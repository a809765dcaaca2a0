// RMSNorm forward (out, rstd) and backward (dinp, dweight; accumulated) against the CPU.
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
    // N = 130 spans three of the backward's 64-row blocks.
    const Case cases[] = {{37, 64}, {5, 1000}, {130, 768}, {1, 33}};
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

}  // namespace
}  // namespace agpt::cuda::test
