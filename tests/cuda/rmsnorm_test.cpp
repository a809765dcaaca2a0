// RMSNorm forward (out, rstd) and backward (dinp, dweight; accumulated) against the CPU, over
// whole rows and per head inside wider rows (QK-norm).
#include "kernels/cpu/rmsnorm.h"
#include "cuda_test_util.h"
#include "kernels/cuda/rmsnorm.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_rmsnorm(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, C;
    };
    // N = 130 spans five of the backward's 32-row blocks, the last partial; C 36 takes 16-byte
    // packs in fp32, not in bf16; C 33 in neither; C 1000 and 768 in both.
    const Case cases[] = {{37, 64}, {5, 1000}, {130, 768}, {1, 33}, {9, 36}, {70, 256}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.C;
        const float eps = 1e-5f;
        const auto x = representable<T>(random_floats(n, rng));
        const auto w = representable<T>(random_floats(c.C, rng, 0.5f, 1.5f));
        const auto dout = representable<T>(random_floats(n, rng));
        const auto dinp0 = representable<T>(random_floats(n, rng));  // backward accumulates
        const auto dw0 = random_floats(c.C, rng);
        const std::string tag = " N" + std::to_string(c.N) + " C" + std::to_string(c.C);

        std::vector<float> out(n), rstd(c.N);
        cpu::rmsnorm_forward<float>(out.data(), rstd.data(), x.data(), w.data(), c.N, c.C, eps);
        std::vector<float> dinp = dinp0, dw = dw0;
        cpu::rmsnorm_backward<float>(dinp.data(), dw.data(), dout.data(), x.data(), w.data(),
                                     rstd.data(), c.N, c.C);

        Dev<T> d_x(x), d_w(w), d_dout(dout), d_dinp(dinp0);
        Dev<float> d_dw(dw0), d_rstd_ref(rstd);
        auto d_out = Dev<T>::poisoned(n);
        auto d_rstd = Dev<float>::poisoned(c.N);
        rmsnorm_forward<T>(d_out.ptr(), d_rstd.ptr(), d_x.ptr(), d_w.ptr(), c.N, c.C, eps);
        expect_close("rmsnorm_forward out" + tag, d_out.get(), out, tol);
        expect_close("rmsnorm_forward rstd" + tag, d_rstd.get(), rstd, kTolFp32);

        // The backward reads the CPU's rstd: both sides get the same inputs.
        rmsnorm_backward<T>(d_dinp.ptr(), d_dw.ptr(), d_dout.ptr(), d_x.ptr(), d_w.ptr(),
                            d_rstd_ref.ptr(), c.N, c.C);
        expect_close("rmsnorm_backward dinp" + tag, d_dinp.get(), dinp, tol);
        expect_close("rmsnorm_backward dweight (fp32)" + tag, d_dw.get(), dw, kTolFp32Long);
    }
}

TEST(CudaRmsnorm, Fp32) {
    check_rmsnorm<float>(kTolFp32, 1100);
}
TEST(CudaRmsnorm, Bf16) {
    check_rmsnorm<bf16>(kTolBf16, 1200);
}

// Per-head norms inside fused rows, as the model's QK-norm runs them: the input heads at stride
// `in_stride`, the output written into other rows (and in place), the input gradient
// accumulated into rows of a third stride.
template <typename T>
void check_rmsnorm_heads(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, heads, C, in_stride, out_stride, d_stride;
    };
    // N·heads = 140 spans five of the backward's 32-row blocks; C 16 and 64 take 16-byte packs
    // (strides multiples of 8), C 33 does not.
    const Case cases[] = {
        {35, 4, 16, 96, 128, 64}, {3, 2, 64, 128, 192, 160}, {7, 1, 33, 33, 40, 33}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t rows = static_cast<std::size_t>(c.N) * c.heads;
        const float eps = 1e-6f;
        const auto x =
            representable<T>(random_floats(static_cast<std::size_t>(c.N) * c.in_stride, rng));
        const auto w = representable<T>(random_floats(c.C, rng, 0.5f, 1.5f));
        const auto out0 =
            representable<T>(random_floats(static_cast<std::size_t>(c.N) * c.out_stride, rng));
        const auto dout =
            representable<T>(random_floats(static_cast<std::size_t>(c.N) * c.out_stride, rng));
        const auto dinp0 =
            representable<T>(random_floats(static_cast<std::size_t>(c.N) * c.d_stride, rng));
        const auto dw0 = random_floats(c.C, rng);
        const std::string tag = " N" + std::to_string(c.N) + " heads" + std::to_string(c.heads) +
                                " C" + std::to_string(c.C);

        // Whole output rows are compared: the columns past the heads stay untouched.
        std::vector<float> out = out0, rstd(rows);
        cpu::rmsnorm_heads_forward<float>(out.data(), c.out_stride, rstd.data(), x.data(),
                                          c.in_stride, w.data(), c.N, c.heads, c.C, eps);
        std::vector<float> dinp = dinp0, dw = dw0;
        cpu::rmsnorm_heads_backward<float>(dinp.data(), c.d_stride, dw.data(), dout.data(),
                                           c.out_stride, x.data(), c.in_stride, w.data(),
                                           rstd.data(), c.N, c.heads, c.C);

        Dev<T> d_x(x), d_w(w), d_out(out0), d_dout(dout), d_dinp(dinp0);
        Dev<float> d_dw(dw0), d_rstd_ref(rstd);
        auto d_rstd = Dev<float>::poisoned(rows);
        rmsnorm_heads_forward<T>(d_out.ptr(), c.out_stride, d_rstd.ptr(), d_x.ptr(), c.in_stride,
                                 d_w.ptr(), c.N, c.heads, c.C, eps);
        expect_close("rmsnorm_heads_forward out" + tag, d_out.get(), out, tol);
        expect_close("rmsnorm_heads_forward rstd" + tag, d_rstd.get(), rstd, kTolFp32);
        // In place (out = inp, equal strides), as the CPU allows.
        std::vector<float> in_place = x;
        std::vector<float> rstd2(rows);
        cpu::rmsnorm_heads_forward<float>(in_place.data(), c.in_stride, rstd2.data(),
                                          in_place.data(), c.in_stride, w.data(), c.N, c.heads, c.C,
                                          eps);
        Dev<T> d_in_place(x);
        rmsnorm_heads_forward<T>(d_in_place.ptr(), c.in_stride, d_rstd.ptr(), d_in_place.ptr(),
                                 c.in_stride, d_w.ptr(), c.N, c.heads, c.C, eps);
        expect_close("rmsnorm_heads_forward in place" + tag, d_in_place.get(), in_place, tol);

        rmsnorm_heads_backward<T>(d_dinp.ptr(), c.d_stride, d_dw.ptr(), d_dout.ptr(), c.out_stride,
                                  d_x.ptr(), c.in_stride, d_w.ptr(), d_rstd_ref.ptr(), c.N, c.heads,
                                  c.C);
        expect_close("rmsnorm_heads_backward dinp" + tag, d_dinp.get(), dinp, tol);
        expect_close("rmsnorm_heads_backward dweight (fp32)" + tag, d_dw.get(), dw, kTolFp32Long);
    }
}

TEST(CudaRmsnorm, HeadsFp32) {
    check_rmsnorm_heads<float>(kTolFp32, 1300);
}
TEST(CudaRmsnorm, HeadsBf16) {
    check_rmsnorm_heads<bf16>(kTolBf16, 1400);
}

}  // namespace
}  // namespace agpt::cuda::test
