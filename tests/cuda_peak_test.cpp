// cuda_table_peak_tflops (train/cuda_training.h), the denominator of MFU on cuda: the names the
// CUDA runtime reports for each known device, against the vendors' dense bf16 figures.
#include <gtest/gtest.h>

#include "train/cuda_training.h"

namespace agpt {
namespace {

TEST(CudaPeak, KnownDevicesHaveTheirDenseBf16Peak) {
    // Hopper whitepaper: H100 SXM5 989.4 dense (1978.9 with sparsity); the H200 and GH200 data
    // sheets give the same 1,979 with sparsity.
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA H100 80GB HBM3"), 989.4);
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA H200"), 989.4);
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA GH200 480GB"), 989.4);
    // Data sheets, with sparsity: H100 PCIe 1,513; H100 NVL and H200 NVL 1,671.
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA H100 PCIe"), 756.5);
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA H100 NVL"), 835.5);
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA H200 NVL"), 835.5);
    // A100 data sheet: 312 dense (624 with sparsity), SXM4 and PCIe alike.
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA A100-SXM4-80GB"), 312.0);
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA A100-PCIE-40GB"), 312.0);
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA A100 80GB PCIe"), 312.0);
    // L40S data sheet: 362.05 dense (733 with sparsity).
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA L40S"), 362.05);
    // A10G, AWS's variant of the A10 (no NVIDIA data sheet): the 70 quoted for it.
    EXPECT_DOUBLE_EQ(cuda_table_peak_tflops("NVIDIA A10G"), 70.0);
}

TEST(CudaPeak, UnknownDevicesAreNotInTheTable) {
    // 0 sends cuda_peak_tflops to its GEMM measurement. Names that contain a known one's prefix
    // (L40, A10) must not borrow its peak.
    for (const char* name :
         {"", "NVIDIA GeForce RTX 4090", "NVIDIA L40", "NVIDIA A10", "NVIDIA H800", "Tesla V100"})
        EXPECT_EQ(cuda_table_peak_tflops(name), 0.0) << name;
}

}  // namespace
}  // namespace agpt
