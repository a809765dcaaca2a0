// The seam itself: checked calls name the file, the line and CUDA's message (no device
// needed); the runtime query never throws; device buffers round-trip.
#include <string>
#include <vector>

#include "../scoped_env.h"
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

// Out of memory names the size asked for and what makes a job smaller (no device needed); on a
// device also its free and total memory, from a real failed allocation.
TEST(CudaDevice, OutOfMemoryNamesTheSizeAndTheWayOut) {
    const auto message = [](auto&& allocate) {
        try {
            allocate();
        } catch (const agpt::Error& e) {
            return std::string(e.what());
        }
        return std::string("no exception");
    };
    const std::string m =
        message([] { AGPT_CUDA_CHECK_ALLOC(cudaErrorMemoryAllocation, std::size_t{3} << 30); });
    for (const char* part :
         {"tests/cuda/device_test.cpp:", "out of memory", "3.00 GiB asked", "agpt plan",
          "training.local_batch_size", "activation_checkpoint.mode"})
        EXPECT_NE(m.find(part), std::string::npos) << part << " in: " << m;
    // Other errors keep CUDA's own message.
    const std::string other =
        message([] { AGPT_CUDA_CHECK_ALLOC(cudaErrorInvalidValue, std::size_t{1} << 20); });
    EXPECT_NE(other.find("cudaErrorInvalidValue"), std::string::npos) << other;
    EXPECT_EQ(other.find("agpt plan"), std::string::npos) << other;

    AGPT_REQUIRE_CUDA_DEVICE();
    const std::string real = message([] { DeviceBuffer<float> huge(std::size_t{1} << 40); });
    EXPECT_NE(real.find("4096.00 GiB asked"), std::string::npos) << real;
    EXPECT_NE(real.find("GiB free on the device"), std::string::npos) << real;
}

// The switches a run's logs and results record: those set, in a fixed order; none by default.
TEST(CudaDevice, ActiveSwitchesListWhatIsSet) {
    const ScopedEnv k("AGPT_ATTN_KERNEL", nullptr), f("AGPT_ATTN_FORWARD", "wide"),
        b("AGPT_ATTN_BACKWARD", nullptr), g("AGPT_GEMM_EPILOGUE", "none");
    EXPECT_EQ(active_switches(),
              (std::vector<std::string>{"AGPT_ATTN_FORWARD=wide", "AGPT_GEMM_EPILOGUE=none"}));
    const ScopedEnv f0("AGPT_ATTN_FORWARD", nullptr), g0("AGPT_GEMM_EPILOGUE", nullptr);
    EXPECT_TRUE(active_switches().empty());
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
