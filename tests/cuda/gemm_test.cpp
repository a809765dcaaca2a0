// cuBLASLt GEMMs against cpu::gemm (OpenBLAS): the row-major conventions, every transpose
// combination with padded leading dimensions, accumulation, and the matmul wrappers.
#include "kernels/cpu/gemm.h"
#include "cuda_test_util.h"
#include "kernels/cuda/gemm.h"

namespace agpt::cuda::test {
namespace {

struct Shape {
    int M, K, N;
};
const Shape kShapes[] = {{37, 53, 29}, {1, 64, 7}, {128, 256, 96}, {300, 77, 513}};

// Storage type TA for A and B, TC for C; tol for this combination.
template <typename TA, typename TC>
void check_gemm(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Blas blas;
    int case_id = 0;
    for (const Shape& s : kShapes)
        for (int ta = 0; ta < 2; ++ta)
            for (int tb = 0; tb < 2; ++tb)
                for (float beta : {0.0f, 1.0f}) {
                    Rng rng(seed + case_id++);
                    const int lda = (ta ? s.M : s.K) + 3;  // padded rows
                    const int ldb = (tb ? s.K : s.N) + 1;
                    const int ldc = s.N + 2;
                    const auto A = representable<TA>(random_floats((ta ? s.K : s.M) * lda, rng));
                    const auto B = representable<TA>(random_floats((tb ? s.N : s.K) * ldb, rng));
                    auto C =
                        representable<TC>(random_floats(static_cast<std::size_t>(s.M) * ldc, rng));
                    const float alpha = 0.75f;
                    Dev<TA> dA(A), dB(B);
                    Dev<TC> dC(C);
                    gemm<TA, TC>(blas, ta, tb, s.M, s.N, s.K, alpha, dA.ptr(), lda, dB.ptr(), ldb,
                                 beta, dC.ptr(), ldc);
                    cpu::gemm<float>(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb,
                                     beta, C.data(), ldc);
                    expect_close("gemm M" + std::to_string(s.M) + " K" + std::to_string(s.K) +
                                     " N" + std::to_string(s.N) + (ta ? " Aᵀ" : " A") +
                                     (tb ? " Bᵀ" : " B") + (beta != 0.0f ? " +C" : ""),
                                 dC.get(), C, tol);
                }
}

TEST(CudaGemm, Fp32AllTransposes) {
    check_gemm<float, float>(kTolFp32Long, 100);
}
TEST(CudaGemm, Bf16AllTransposes) {
    check_gemm<bf16, bf16>(kTolBf16, 200);
}
TEST(CudaGemm, Bf16InputsFp32Output) {
    check_gemm<bf16, float>(kTolFp32Long, 300);  // same bf16 inputs, fp32 sums on both sides
}

template <typename T, typename TW>
void check_matmul(double tol, double tol_w, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Blas blas;
    int case_id = 0;
    for (const Shape& s : kShapes) {
        Rng rng(seed + case_id++);
        const auto inp = representable<T>(random_floats(static_cast<std::size_t>(s.M) * s.K, rng));
        const auto w = representable<T>(random_floats(static_cast<std::size_t>(s.N) * s.K, rng));
        const auto dout = representable<T>(random_floats(static_cast<std::size_t>(s.M) * s.N, rng));
        auto out_acc = representable<T>(random_floats(static_cast<std::size_t>(s.M) * s.N, rng));
        auto dinp = representable<T>(random_floats(inp.size(), rng));
        auto dw = representable<TW>(random_floats(w.size(), rng));
        const std::string tag =
            " M" + std::to_string(s.M) + " K" + std::to_string(s.K) + " N" + std::to_string(s.N);
        Dev<T> d_inp(inp), d_w(w), d_dout(dout), d_acc(out_acc), d_dinp(dinp);
        Dev<TW> d_dw(dw);
        auto d_out = Dev<T>::poisoned(static_cast<std::size_t>(s.M) * s.N);

        matmul_forward<T, T>(blas, d_out.ptr(), d_inp.ptr(), d_w.ptr(), s.M, s.K, s.N);
        std::vector<float> out(static_cast<std::size_t>(s.M) * s.N);
        cpu::matmul_forward<float>(out.data(), inp.data(), w.data(), s.M, s.K, s.N);
        expect_close("matmul_forward" + tag, d_out.get(), out, tol);

        matmul_forward<T, T>(blas, d_acc.ptr(), d_inp.ptr(), d_w.ptr(), s.M, s.K, s.N, true);
        cpu::matmul_forward<float>(out_acc.data(), inp.data(), w.data(), s.M, s.K, s.N, true);
        expect_close("matmul_forward accumulate" + tag, d_acc.get(), out_acc, tol);

        matmul_backward<T, TW>(blas, d_dinp.ptr(), d_dw.ptr(), d_dout.ptr(), d_inp.ptr(), d_w.ptr(),
                               s.M, s.K, s.N);
        cpu::matmul_backward<float>(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), s.M,
                                    s.K, s.N);
        expect_close("matmul_backward dinp" + tag, d_dinp.get(), dinp, tol);
        expect_close("matmul_backward dweight" + tag, d_dw.get(), dw, tol_w);
    }
}

TEST(CudaMatmul, Fp32ForwardBackward) {
    check_matmul<float, float>(kTolFp32Long, kTolFp32Long, 400);
}
TEST(CudaMatmul, Bf16ForwardBackward) {
    check_matmul<bf16, bf16>(kTolBf16, kTolBf16, 500);
}
TEST(CudaMatmul, Bf16WithFp32WeightGradient) {
    check_matmul<bf16, float>(kTolBf16, kTolFp32Long, 600);
}

}  // namespace
}  // namespace agpt::cuda::test
