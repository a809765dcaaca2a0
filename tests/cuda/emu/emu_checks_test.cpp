// The emulator's own checks (tests/cuda/emu): each rule a GPU enforces, broken once by a kernel
// of emu_checks_kernels.cu, must end the run with a message naming the kernel and the rule (or,
// for a race, give a result that differs from the correct one), as the GPU would fail. Emulator
// only: registered in agpt_cuda_emu_tests, not in agpt_cuda_tests.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"

namespace agpt::cuda::emu_checks {

void fill(float* out, float value, dim3 grid, dim3 block);
void dynamic_smem(float* out, int threads, std::size_t smem, int attribute_bytes);
void cp_async16(float* out, const float* in);
void pack_copy(float* out, const float* in);
void neighbour(float* out, int blocks, int threads, int shift, bool barrier);

namespace {

class EmuChecks : public ::testing::Test {
  protected:
    // Death tests re-run the binary for the one test: no fork of a process with threads.
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(EmuChecks, FreshDeviceMemoryIsNanAndAligned) {
    DeviceBuffer<float> f(5);
    DeviceBuffer<int> i(3);
    DeviceBuffer<bf16> h(7);
    std::vector<float> fh(5);
    std::vector<int> ih(3);
    std::vector<bf16> hh(7);
    f.download(fh.data());
    i.download(ih.data());
    h.download(hh.data());
    for (float x : fh) EXPECT_TRUE(std::isnan(x));
    for (int x : ih) EXPECT_EQ(x, -1);
    for (bf16 x : hh) EXPECT_TRUE(std::isnan(__bfloat162float(x)));
    for (const void* p : {static_cast<const void*>(f.data()), static_cast<const void*>(i.data()),
                          static_cast<const void*>(h.data())})
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 256, 0u);
}

TEST_F(EmuChecks, GoodLaunchRuns) {
    DeviceBuffer<float> out(64);
    fill(out.data(), 2.0f, dim3(2), dim3(32));
    std::vector<float> h(64);
    out.download(h.data());
    for (float x : h) EXPECT_EQ(x, 2.0f);
}

TEST_F(EmuChecks, BadGridOrBlockAborts) {
    DeviceBuffer<float> out(64);
    EXPECT_DEATH(fill(out.data(), 1.0f, dim3(0), dim3(32)), "kernel fill_kernel: grid \\(0,1,1\\)");
    EXPECT_DEATH(fill(out.data(), 1.0f, dim3(1, 65536), dim3(1)), "grid \\(1,65536,1\\) outside");
    EXPECT_DEATH(fill(out.data(), 1.0f, dim3(1), dim3(0)), "block \\(0,1,1\\) outside");
    EXPECT_DEATH(fill(out.data(), 1.0f, dim3(1), dim3(1025)), "block \\(1025,1,1\\) outside");
}

TEST_F(EmuChecks, LargeDynamicSharedMemoryNeedsTheAttribute) {
    DeviceBuffer<float> out(32);
    constexpr std::size_t k64KiB = 64 * 1024;
    EXPECT_DEATH(dynamic_smem(out.data(), 32, k64KiB, 0),
                 "kernel dynamic_smem_kernel: 65536 bytes of dynamic shared memory, above 49152 "
                 "without cudaFuncSetAttribute");
    EXPECT_DEATH(dynamic_smem(out.data(), 32, k64KiB, 60 * 1024), "\\(set: 61440\\)");
    EXPECT_DEATH(dynamic_smem(out.data(), 32, 228 * 1024, 227 * 1024),
                 "233472 bytes of dynamic shared memory, above the 232448 bytes");
    EXPECT_DEATH(dynamic_smem(out.data(), 32, 1024, 228 * 1024),
                 "cudaFuncAttributeMaxDynamicSharedMemorySize, 233472\\) outside");
    dynamic_smem(out.data(), 32, k64KiB, static_cast<int>(k64KiB));
    std::vector<float> h(32);
    out.download(h.data());
    for (int t = 0; t < 32; ++t) EXPECT_EQ(h[t], static_cast<float>(31 - t));
}

TEST_F(EmuChecks, MisalignedVectorAccessAborts) {
    DeviceBuffer<float> in(8), out(8);
    in.fill_bytes(0);
    EXPECT_DEATH(
        cp_async16(out.data(), in.data() + 1),
        "kernel cp_async16_kernel: cp.async 16 source at 0x[0-9a-f]+, not 16-byte aligned");
    EXPECT_DEATH(pack_copy(out.data() + 2, in.data()),
                 "kernel pack_copy_kernel: vector access at 0x[0-9a-f]+, not 16-byte aligned");
    pack_copy(out.data() + 4, in.data() + 4);
    std::vector<float> h(8);
    out.download(h.data());
    for (int k = 4; k < 8; ++k) EXPECT_EQ(h[k], 0.0f);
}

// A thread reading what another wrote to shared memory without a barrier between: the emulator
// alternates the fibers' order between blocks, so in some block the read comes first and sees
// the launch's NaN fill, whichever neighbour (lower or higher) is read.
TEST_F(EmuChecks, MissingBarrierShowsAsAWrongResult) {
    constexpr int kBlocks = 2, kThreads = 64;
    DeviceBuffer<float> out(kBlocks * kThreads);
    std::vector<float> h(kBlocks * kThreads);
    for (int shift : {1, -1}) {
        auto wrong = [&] {
            out.download(h.data());
            int n = 0;
            for (int i = 0; i < kBlocks * kThreads; ++i) {
                const int t = i % kThreads, other = t + shift;
                n += h[i] != static_cast<float>(other >= 0 && other < kThreads ? other : t);
            }
            return n;
        };
        neighbour(out.data(), kBlocks, kThreads, shift, true);
        EXPECT_EQ(wrong(), 0) << "shift " << shift << " with the barrier";
        neighbour(out.data(), kBlocks, kThreads, shift, false);
        EXPECT_GT(wrong(), 0) << "shift " << shift << " without the barrier";
    }
}

TEST_F(EmuChecks, GemmRejectsBadSizesAndLeadingDimensions) {
    Blas blas;
    DeviceBuffer<float> a(64), b(64), c(64);
    // Row-major C (M,4) = A (M,K) · op(B), op(B) (K,4): B (K,4) or, transposed, (4,K).
    auto product = [&](int M, int K, bool trans_b, int lda, int ldb, int ldc) {
        gemm<float, float>(blas, false, trans_b, M, 4, K, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                           c.data(), ldc);
    };
    product(4, 4, false, 4, 4, 4);
    product(4, 2, true, 2, 2, 4);
    EXPECT_THROW(product(4, 4, false, 3, 4, 4), Error);   // lda < K
    EXPECT_THROW(product(4, 2, true, 2, 1, 4), Error);    // ldb < K (B transposed)
    EXPECT_THROW(product(4, 2, false, 2, 3, 4), Error);   // ldb < N
    EXPECT_THROW(product(4, 4, false, 4, 4, 3), Error);   // ldc < N
    EXPECT_THROW(product(4, 0, false, 0, 4, 4), Error);   // lda < 1
    EXPECT_THROW(product(-1, 4, false, 4, 4, 4), Error);  // M < 0
}

}  // namespace
}  // namespace agpt::cuda::emu_checks
