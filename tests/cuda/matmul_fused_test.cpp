// The fused matrix products (kernels/cuda/gemm.h: cuBLASLt's bias, GELU, GELU-gradient and
// bias-gradient epilogues, and a residual read from C into a distinct D) against the CPU's GEMM,
// bias add, bias gradient and GELU on the same inputs, with the epilogues and, under
// AGPT_GEMM_EPILOGUE=none, with the unfused path they fall back to. Shapes whose rows are not a
// multiple of 8 elements take the unfused path in both modes (cuBLASLt's aux matrices need it).
#include "../scoped_env.h"
#include "cuda_test_util.h"
#include "kernels/cpu/bias.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cuda/gemm.h"

namespace agpt::cuda::test {
namespace {

struct Shape {
    int M, K, N;
};
const Shape kShapes[] = {{37, 64, 72}, {16, 40, 96}, {9, 24, 30}, {1, 8, 16}};

template <typename T>
void check_fused(double tol, uint64_t seed, bool unfused) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const ScopedEnv mode("AGPT_GEMM_EPILOGUE", unfused ? "none" : nullptr);
    Blas blas;
    int case_id = 0;
    for (const Shape& s : kShapes) {
        Rng rng(seed + case_id++);
        const std::size_t MK = static_cast<std::size_t>(s.M) * s.K,
                          MN = static_cast<std::size_t>(s.M) * s.N,
                          NK = static_cast<std::size_t>(s.N) * s.K;
        const auto inp = representable<T>(random_floats(MK, rng));
        const auto weight = representable<T>(random_floats(NK, rng));
        const auto bias = representable<T>(random_floats(s.N, rng));
        const auto residual = representable<T>(random_floats(MN, rng));
        const auto dout = representable<T>(random_floats(MN, rng));
        const auto pre_k = representable<T>(random_floats(MK, rng, -3.0f, 3.0f));
        const std::string tag = " M" + std::to_string(s.M) + " K" + std::to_string(s.K) + " N" +
                                std::to_string(s.N) + (unfused ? " unfused" : "");
        Dev<T> d_inp(inp), d_w(weight), d_bias(bias), d_res(residual), d_dout(dout), d_pre_k(pre_k);

        std::vector<float> product(MN);
        cpu::matmul_forward<float>(product.data(), inp.data(), weight.data(), s.M, s.K, s.N);
        std::vector<float> with_bias = product;
        cpu::bias_forward<float>(with_bias.data(), bias.data(), s.M, s.N);

        // Bias, bias + residual into a distinct output, residual alone, in place.
        auto d_out = Dev<T>::poisoned(MN);
        matmul_forward_bias<T>(blas, d_out.ptr(), d_inp.ptr(), d_w.ptr(), d_bias.ptr(), nullptr,
                               s.M, s.K, s.N);
        expect_close("matmul_forward_bias" + tag, d_out.get(), with_bias, tol);
        std::vector<float> ref(MN);
        for (std::size_t i = 0; i < MN; ++i) ref[i] = with_bias[i] + residual[i];
        matmul_forward_bias<T>(blas, d_out.ptr(), d_inp.ptr(), d_w.ptr(), d_bias.ptr(), d_res.ptr(),
                               s.M, s.K, s.N);
        expect_close("matmul_forward_bias + residual" + tag, d_out.get(), ref, tol);
        EXPECT_EQ(d_res.get(), residual) << "the residual is an input only";
        for (std::size_t i = 0; i < MN; ++i) ref[i] = product[i] + residual[i];
        matmul_forward_bias<T>(blas, d_out.ptr(), d_inp.ptr(), d_w.ptr(), nullptr, d_res.ptr(), s.M,
                               s.K, s.N);
        expect_close("matmul_forward residual" + tag, d_out.get(), ref, tol);
        Dev<T> d_acc(residual);
        matmul_forward_bias<T>(blas, d_acc.ptr(), d_inp.ptr(), d_w.ptr(), nullptr, d_acc.ptr(), s.M,
                               s.K, s.N);
        expect_close("matmul_forward residual in place" + tag, d_acc.get(), ref, tol);

        // Bias + GELU: the pre-activation and the activation.
        std::vector<float> act(MN);
        cpu::gelu_forward<float>(act.data(), with_bias.data(), static_cast<long>(MN));
        auto d_pre = Dev<T>::poisoned(MN);
        auto d_act = Dev<T>::poisoned(MN);
        matmul_forward_bias_gelu<T>(blas, d_act.ptr(), d_pre.ptr(), d_inp.ptr(), d_w.ptr(),
                                    d_bias.ptr(), s.M, s.K, s.N);
        expect_close("matmul_forward_bias_gelu pre" + tag, d_pre.get(), with_bias, tol);
        expect_close("matmul_forward_bias_gelu out" + tag, d_act.get(), act, tol);

        // (dout · weight) ⊙ gelu′(pre), overwriting a poisoned dinp.
        std::vector<float> dprod(MK), dinp(MK, 0.0f);
        cpu::gemm<float>(false, false, s.M, s.K, s.N, 1.0f, dout.data(), s.N, weight.data(), s.K,
                         0.0f, dprod.data(), s.K);
        cpu::gelu_backward<float>(dinp.data(), dprod.data(), pre_k.data(), static_cast<long>(MK));
        auto d_dinp = Dev<T>::poisoned(MK);
        matmul_backward_dgelu<T>(blas, d_dinp.ptr(), d_dout.ptr(), d_w.ptr(), d_pre_k.ptr(), s.M,
                                 s.K, s.N);
        expect_close("matmul_backward_dgelu" + tag, d_dinp.get(), dinp, tol);

        // The same with the bias gradient, dbias (K) += Σ_rows dinp, onto a non-zero start.
        const auto dbias0 = random_floats(s.K, rng);
        std::vector<float> dbias = dbias0;
        cpu::bias_backward<float>(dbias.data(), dinp.data(), s.M, s.K);
        Dev<float> d_dbias(dbias0);
        auto d_dinp2 = Dev<T>::poisoned(MK);
        matmul_backward_dgelu<T>(blas, d_dinp2.ptr(), d_dout.ptr(), d_w.ptr(), d_pre_k.ptr(), s.M,
                                 s.K, s.N, d_dbias.ptr());
        expect_close("matmul_backward_dgelu with dbias" + tag, d_dinp2.get(), dinp, tol);
        expect_close("matmul_backward_dgelu dbias" + tag, d_dbias.get(), dbias, tol);

        // A linear layer's dweight (N,K) += doutᵀ·inp and dbias (N) += Σ_rows dout, onto
        // non-zero starts.
        const auto dweight0 = random_floats(NK, rng);
        const auto dbias_n0 = random_floats(s.N, rng);
        std::vector<float> dweight = dweight0, dbias_n = dbias_n0;
        cpu::gemm<float>(true, false, s.N, s.K, s.M, 1.0f, dout.data(), s.N, inp.data(), s.K, 1.0f,
                         dweight.data(), s.K);
        cpu::bias_backward<float>(dbias_n.data(), dout.data(), s.M, s.N);
        Dev<float> d_dweight(dweight0), d_dbias_n(dbias_n0);
        matmul_backward_weight_bias<T>(blas, d_dweight.ptr(), d_dbias_n.ptr(), d_dout.ptr(),
                                       d_inp.ptr(), s.M, s.K, s.N);
        expect_close("matmul_backward_weight_bias dweight" + tag, d_dweight.get(), dweight, tol);
        expect_close("matmul_backward_weight_bias dbias" + tag, d_dbias_n.get(), dbias_n, tol);
    }
}

TEST(CudaMatmulFused, Fp32) {
    check_fused<float>(kTolFp32Long, 7100, false);
}
TEST(CudaMatmulFused, Bf16) {
    check_fused<bf16>(kTolBf16, 7200, false);
}
TEST(CudaMatmulFused, Fp32Unfused) {
    check_fused<float>(kTolFp32Long, 7100, true);
}
TEST(CudaMatmulFused, Bf16Unfused) {
    check_fused<bf16>(kTolBf16, 7200, true);
}

}  // namespace
}  // namespace agpt::cuda::test
