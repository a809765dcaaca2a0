// `agpt_cuda_tests --bench`: a few timings for tuning, one "BENCH name value unit" line each
// (scripts/cuda_device_check.sh tabulates them). GEMM throughput at 4096³ and causal attention
// forward/backward at GPT-2-small shapes (B=8, H=12, T=1024, hd=64), bf16 also at hd=128, at
// hd=192 (the MoE table flavors' MLA heads), with the plain kernels (AGPT_ATTN_KERNEL=simple;
// names ending in _simple), and the hd-64 backward also at the training benchmarks' batch (B=32)
// and split (AGPT_ATTN_BACKWARD=split; names ending in _split), the forward also wide
// (AGPT_ATTN_FORWARD=wide; _wide); RMSNorm forward and backward at 32768 × 768.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "../scoped_env.h"
#include "cuda_test_util.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/rmsnorm.h"

namespace agpt::cuda::test {

namespace {

// Mean milliseconds per call over `iters` calls after `warmup` calls, timed with events.
double time_ms(const std::function<void()>& f, int warmup, int iters) {
    for (int i = 0; i < warmup; ++i) f();
    cudaEvent_t a, b;
    AGPT_CUDA_CHECK(cudaEventCreate(&a));
    AGPT_CUDA_CHECK(cudaEventCreate(&b));
    AGPT_CUDA_CHECK(cudaEventRecord(a));
    for (int i = 0; i < iters; ++i) f();
    AGPT_CUDA_CHECK(cudaEventRecord(b));
    AGPT_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0.0f;
    AGPT_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms / iters;
}

void report(const char* name, double value, const char* unit) {
    std::printf("BENCH %s %.3f %s\n", name, value, unit);
    std::fflush(stdout);
}

template <typename T>
void bench_gemm(const char* name, int n, int iters) {
    Blas blas;
    Rng rng(1);
    const auto host = random_floats(static_cast<std::size_t>(n) * n, rng);
    Dev<T> a(host), b(host);
    auto c = Dev<T>::poisoned(host.size());
    const double ms =
        time_ms([&] { matmul_forward<T, T>(blas, c.ptr(), a.ptr(), b.ptr(), n, n, n); }, 3, iters);
    report(name, 2.0 * n * n * n / (ms * 1e-3) / 1e12, "TFLOP/s");
}

template <typename T>
void bench_attention(const char* tag, int B, int H, int KV, int T_len, int hd) {
    Rng rng(2);
    const long row = static_cast<long>(H + 2 * KV) * hd;
    const std::size_t n_qkv = static_cast<std::size_t>(B) * T_len * row;
    const std::size_t n_out = static_cast<std::size_t>(B) * T_len * H * hd;
    Dev<T> qkv(random_floats(n_qkv, rng)), dout(random_floats(n_out, rng));
    Dev<T> dqkv(std::vector<float>(n_qkv, 0.0f));
    auto out = Dev<T>::poisoned(n_out);
    auto lse = Dev<float>::poisoned(static_cast<std::size_t>(B) * H * T_len);
    const double fwd = time_ms(
        [&] { attention_forward<T>(out.ptr(), lse.ptr(), qkv.ptr(), B, T_len, H, KV, hd); }, 2, 10);
    const double bwd = time_ms(
        [&] {
            attention_backward<T>(dqkv.ptr(), dout.ptr(), qkv.ptr(), out.ptr(), lse.ptr(), B, T_len,
                                  H, KV, hd);
        },
        2, 10);
    // FLOPs as FlashAttention counts them: causal forward 2 matmuls over half the scores,
    // backward 2.5× the forward.
    const double fwd_flops = 4.0 * B * H * static_cast<double>(T_len) * T_len * hd / 2;
    char name[128];
    std::snprintf(name, sizeof name, "attn_fwd_%s_ms", tag);
    report(name, fwd, "ms");
    std::snprintf(name, sizeof name, "attn_bwd_%s_ms", tag);
    report(name, bwd, "ms");
    std::snprintf(name, sizeof name, "attn_fwd+bwd_%s_ms", tag);
    report(name, fwd + bwd, "ms");
    std::snprintf(name, sizeof name, "attn_fwd_%s_tflops", tag);
    report(name, fwd_flops / (fwd * 1e-3) / 1e12, "TFLOP/s");
    std::snprintf(name, sizeof name, "attn_bwd_%s_tflops", tag);
    report(name, 2.5 * fwd_flops / (bwd * 1e-3) / 1e12, "TFLOP/s");
}

// RMSNorm at the training benchmarks' rows (B·T = 32768, dim 768): milliseconds and the bandwidth
// of the bytes each pass must move (forward: read x, write y; backward: read dy, x and the
// residual gradient it accumulates into, write that).
void bench_rmsnorm(int N, int C) {
    Rng rng(3);
    const std::size_t n = static_cast<std::size_t>(N) * C;
    Dev<bf16> x(random_floats(n, rng)), w(random_floats(C, rng, 0.5f, 1.5f)),
        dy(random_floats(n, rng)), dx(random_floats(n, rng));
    auto y = Dev<bf16>::poisoned(n);
    auto rstd = Dev<float>::poisoned(N);
    Dev<float> dw(std::vector<float>(C, 0.0f));
    const double fwd = time_ms(
        [&] { rmsnorm_forward<bf16>(y.ptr(), rstd.ptr(), x.ptr(), w.ptr(), N, C, 1e-5f); }, 3, 20);
    const double bwd = time_ms(
        [&] {
            rmsnorm_backward<bf16>(dx.ptr(), dw.ptr(), dy.ptr(), x.ptr(), w.ptr(), rstd.ptr(), N,
                                   C);
        },
        3, 20);
    char name[128];
    std::snprintf(name, sizeof name, "rmsnorm_fwd_bf16_N%d_C%d_ms", N, C);
    report(name, fwd, "ms");
    std::snprintf(name, sizeof name, "rmsnorm_bwd_bf16_N%d_C%d_ms", N, C);
    report(name, bwd, "ms");
    std::snprintf(name, sizeof name, "rmsnorm_fwd_bf16_N%d_C%d_gbps", N, C);
    report(name, 2.0 * n * sizeof(bf16) / (fwd * 1e-3) / 1e9, "GB/s");
    std::snprintf(name, sizeof name, "rmsnorm_bwd_bf16_N%d_C%d_gbps", N, C);
    report(name, 4.0 * n * sizeof(bf16) / (bwd * 1e-3) / 1e9, "GB/s");
}

}  // namespace

int run_benchmarks() {
    bench_rmsnorm(32768, 768);
    bench_gemm<bf16>("gemm_bf16_4096_tflops", 4096, 20);
    bench_gemm<float>("gemm_fp32_4096_tflops", 4096, 5);
    bench_attention<bf16>("bf16_B8_H12_T1024_hd64", 8, 12, 12, 1024, 64);
    bench_attention<bf16>("bf16_B8_H12_KV4_T1024_hd64", 8, 12, 4, 1024, 64);
    bench_attention<bf16>("bf16_B4_H16_KV4_T1024_hd128", 4, 16, 4, 1024, 128);
    bench_attention<bf16>("bf16_B4_H16_T1024_hd192", 4, 16, 16, 1024, 192);
    bench_attention<float>("fp32_B8_H12_T1024_hd64", 8, 12, 12, 1024, 64);
    bench_attention<bf16>("bf16_B32_H12_T1024_hd64", 32, 12, 12, 1024, 64);
    bench_attention<bf16>("bf16_B32_H12_KV4_T1024_hd64", 32, 12, 4, 1024, 64);
    {
        const ScopedEnv wide("AGPT_ATTN_FORWARD", "wide");
        bench_attention<bf16>("bf16_B8_H12_T1024_hd64_wide", 8, 12, 12, 1024, 64);
        bench_attention<bf16>("bf16_B32_H12_T1024_hd64_wide", 32, 12, 12, 1024, 64);
    }
    {
        const ScopedEnv split("AGPT_ATTN_BACKWARD", "split");
        bench_attention<bf16>("bf16_B8_H12_T1024_hd64_split", 8, 12, 12, 1024, 64);
        bench_attention<bf16>("bf16_B8_H12_KV4_T1024_hd64_split", 8, 12, 4, 1024, 64);
        bench_attention<bf16>("bf16_B32_H12_T1024_hd64_split", 32, 12, 12, 1024, 64);
        bench_attention<bf16>("bf16_B32_H12_KV4_T1024_hd64_split", 32, 12, 4, 1024, 64);
    }
    const ScopedEnv simple("AGPT_ATTN_KERNEL", "simple");
    bench_attention<bf16>("bf16_B8_H12_T1024_hd64_simple", 8, 12, 12, 1024, 64);
    bench_attention<bf16>("bf16_B4_H16_T1024_hd192_simple", 4, 16, 16, 1024, 192);
    return 0;
}

}  // namespace agpt::cuda::test
