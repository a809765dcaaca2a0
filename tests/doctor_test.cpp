#include <gtest/gtest.h>

#include <string>

#include "tools/doctor.h"

namespace agpt {
namespace {

TEST(Doctor, ReportsTheCpuBackendAndWhetherCudaIsCompiledIn) {
    const std::string r = doctor_report();
    EXPECT_EQ(r.rfind("cpu: compiled in", 0), 0u) << r;
    EXPECT_NE(r.find("GEMM: "), std::string::npos) << r;
    EXPECT_NE(r.find("OpenMP: "), std::string::npos) << r;
#if AGPT_HAVE_CUDA
    EXPECT_NE(r.find("cuda: compiled in"), std::string::npos) << r;
    // Either devices are listed or the report says, with a reason, that none is visible.
    const bool devices = r.find("  device 0: ") != std::string::npos;
    const bool none = r.find("cuda: compiled in, no device visible (") != std::string::npos;
    EXPECT_NE(devices, none) << r;
    // NCCL (multi-GPU training): whether libnccl.so.2 loads, with its version beside a device.
    EXPECT_TRUE(r.find("  NCCL: libnccl.so.2 found") != std::string::npos ||
                r.find("  NCCL: libnccl.so.2 not found") != std::string::npos)
        << r;
    if (devices && r.find("  NCCL: libnccl.so.2 found") != std::string::npos) {
        EXPECT_NE(r.find("  NCCL: libnccl.so.2 found, version 2."), std::string::npos) << r;
    }
#else
    EXPECT_NE(r.find("cuda: not compiled in"), std::string::npos) << r;
#endif
}

}  // namespace
}  // namespace agpt
