// The seam itself: checked calls name the file, the line and CUDA's message (no device
// needed); the runtime query never throws; device buffers round-trip.
#include <string>

#include "core/error.h"
#include "cuda_test_util.h"

namespace agpt::cuda::test {
namespace {

TEST(CudaDevice, CheckedCallsThrowWithFileLineAndMessage) {
    try {
        AGPT_CUDA_CHECK(cudaErrorInvalidValue);
        FAIL() << "no exception";
    } catch (const agpt::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("tests/cuda/device_test.cpp:"), std::string::npos) << msg;
        EXPECT_NE(msg.find("cudaErrorInvalidValue"), std::string::npos) << msg;
        EXPECT_NE(msg.find("invalid argument"), std::string::npos) << msg;
    }
    try {
        AGPT_CUBLAS_CHECK(CUBLAS_STATUS_NOT_INITIALIZED);
        FAIL() << "no exception";
    } catch (const agpt::Error& e) {
        EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_NOT_INITIALIZED"), std::string::npos)
            << e.what();
    }
}

TEST(CudaDevice, RuntimeQueryNeverThrows) {
    const RuntimeInfo info = query_runtime();
    EXPECT_GT(info.runtime_version, 0);
    EXPECT_FALSE(info.architectures.empty());
    if (info.devices.empty()) {
        EXPECT_FALSE(info.error.empty());
        std::printf("    no device: %s\n", info.error.c_str());
    }
    for (const DeviceInfo& d : info.devices)
        std::printf("    device %d: %s, cc %d.%d, %.1f GiB\n", d.index, d.name.c_str(), d.cc_major,
                    d.cc_minor, d.memory_bytes / 1073741824.0);
}

TEST(CudaDevice, BufferRoundTripAndPoison) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Rng rng(7100);
    const auto host = random_floats(1001, rng);
    Dev<float> d(host);
    EXPECT_EQ(d.get(), host);
    auto p = Dev<bf16>::poisoned(17);
    for (float x : p.get()) EXPECT_TRUE(std::isnan(x));
    DeviceBuffer<float> moved = DeviceBuffer<float>(8);
    EXPECT_EQ(moved.size(), 8u);
}

}  // namespace
}  // namespace agpt::cuda::test
