// agpt_cuda_tests: the CUDA op tests (GoogleTest), or with --bench the micro-benchmarks.
// The first line says what the runtime sees, so a log shows at once whether tests ran or were
// skipped.
#include <gtest/gtest.h>

#include <cstdio>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/runtime_info.h"

namespace agpt::cuda::test {
int run_benchmarks();
}

int main(int argc, char** argv) {
    using namespace agpt::cuda;
    bool bench = false;
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--bench")
            bench = true;
        else
            args.push_back(argv[i]);
    }
    const RuntimeInfo info = query_runtime();
    std::printf("agpt_cuda_tests: kernels for sm_%s, CUDA runtime %s, driver %s\n",
                info.architectures.c_str(), version_string(info.runtime_version).c_str(),
                info.driver_version ? version_string(info.driver_version).c_str() : "none");
    for (const DeviceInfo& d : info.devices)
        std::printf("  device %d: %s, compute capability %d.%d, %.1f GiB, %d SMs\n", d.index,
                    d.name.c_str(), d.cc_major, d.cc_minor, d.memory_bytes / 1073741824.0,
                    d.multiprocessors);
    if (info.devices.empty())
        std::printf(
            "  no CUDA device visible (%s): tests that need one print "
            "\"skipped: no CUDA device\"\n",
            info.error.c_str());
    std::fflush(stdout);
    if (bench) {
        if (info.devices.empty()) {
            std::printf("skipped: no CUDA device\n");
            return 0;
        }
        try {
            return agpt::cuda::test::run_benchmarks();
        } catch (const agpt::Error& e) {
            std::fprintf(stderr, "agpt_cuda_tests --bench: %s\n", e.what());
            return 1;
        }
    }
    int n = static_cast<int>(args.size());
    ::testing::InitGoogleTest(&n, args.data());
    return RUN_ALL_TESTS();
}
