// LayerNorm forward (out, mean, rstd) and backward (dinp, dweight, dbias; accumulated; and the
// optional column sums of the updated dinp) against the CPU, and the backward's run-to-run
// determinism.
#include <cstring>

#include "cuda_test_util.h"
#include "kernels/cpu/bias.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cuda/layernorm.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_layernorm(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, C;
    };
    // N = 70 spans three of the backward's 32-row blocks; inputs off zero mean exercise the
    // two-pass variance.
    const Case cases[] = {{37, 64}, {5, 1000}, {70, 768}, {1, 33}, {40, 37}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.C;
        const float eps = 1e-5f;
        const auto x = representable<T>(random_floats(n, rng, -1.0f, 3.0f));
        const auto w = representable<T>(random_floats(c.C, rng, 0.5f, 1.5f));
        const auto b = representable<T>(random_floats(c.C, rng));
        const auto dout = representable<T>(random_floats(n, rng));
        const auto dinp0 = representable<T>(random_floats(n, rng));  // backward accumulates
        const auto dw0 = random_floats(c.C, rng);
        const auto db0 = random_floats(c.C, rng);
        const std::string tag = " N" + std::to_string(c.N) + " C" + std::to_string(c.C);

        std::vector<float> out(n), mean(c.N), rstd(c.N);
        cpu::layernorm_forward<float>(out.data(), mean.data(), rstd.data(), x.data(), w.data(),
                                      b.data(), c.N, c.C, eps);
        std::vector<float> dinp = dinp0, dw = dw0, db = db0;
        cpu::layernorm_backward<float>(dinp.data(), dw.data(), db.data(), dout.data(), x.data(),
                                       w.data(), mean.data(), rstd.data(), c.N, c.C);

        Dev<T> d_x(x), d_w(w), d_b(b), d_dout(dout), d_dinp(dinp0);
        Dev<float> d_dw(dw0), d_db(db0), d_dw2(dw0), d_db2(db0), d_mean_ref(mean), d_rstd_ref(rstd);
        auto d_out = Dev<T>::poisoned(n);
        auto d_mean = Dev<float>::poisoned(c.N);
        auto d_rstd = Dev<float>::poisoned(c.N);
        layernorm_forward<T>(d_out.ptr(), d_mean.ptr(), d_rstd.ptr(), d_x.ptr(), d_w.ptr(),
                             d_b.ptr(), c.N, c.C, eps);
        expect_close("layernorm_forward out" + tag, d_out.get(), out, tol);
        expect_close("layernorm_forward mean" + tag, d_mean.get(), mean, kTolFp32);
        expect_close("layernorm_forward rstd" + tag, d_rstd.get(), rstd, kTolFp32);

        // The backward reads the CPU's statistics: both sides get the same inputs.
        layernorm_backward<T>(d_dinp.ptr(), d_dw.ptr(), d_db.ptr(), d_dout.ptr(), d_x.ptr(),
                              d_w.ptr(), d_mean_ref.ptr(), d_rstd_ref.ptr(), c.N, c.C);
        expect_close("layernorm_backward dinp" + tag, d_dinp.get(), dinp, tol);
        const auto got_dw = d_dw.get(), got_db = d_db.get();
        expect_close("layernorm_backward dweight (fp32)" + tag, got_dw, dw, kTolFp32Long);
        expect_close("layernorm_backward dbias (fp32)" + tag, got_db, db, kTolFp32Long);

        auto d_dinp2 = Dev<T>(dinp0);
        layernorm_backward<T>(d_dinp2.ptr(), d_dw2.ptr(), d_db2.ptr(), d_dout.ptr(), d_x.ptr(),
                              d_w.ptr(), d_mean_ref.ptr(), d_rstd_ref.ptr(), c.N, c.C);
        const auto again_dw = d_dw2.get(), again_db = d_db2.get();
        EXPECT_EQ(0, std::memcmp(got_dw.data(), again_dw.data(), c.C * sizeof(float))) << tag;
        EXPECT_EQ(0, std::memcmp(got_db.data(), again_db.data(), c.C * sizeof(float))) << tag;

        // Also summing the updated dinp over the rows (a projection's bias gradient, GPT-2):
        // the same dinp, dweight and dbias bits, and the sums of dinp as stored.
        const auto ds0 = random_floats(c.C, rng);
        auto d_dinp3 = Dev<T>(dinp0);
        Dev<float> d_dw3(dw0), d_db3(db0), d_ds(ds0);
        layernorm_backward<T>(d_dinp3.ptr(), d_dw3.ptr(), d_db3.ptr(), d_dout.ptr(), d_x.ptr(),
                              d_w.ptr(), d_mean_ref.ptr(), d_rstd_ref.ptr(), c.N, c.C, nullptr,
                              d_ds.ptr());
        const auto got_dinp3 = d_dinp3.get();
        EXPECT_EQ(got_dinp3, d_dinp.get()) << tag;
        EXPECT_EQ(d_dw3.get(), got_dw) << tag;
        EXPECT_EQ(d_db3.get(), got_db) << tag;
        std::vector<float> ds = ds0;
        cpu::bias_backward<float>(ds.data(), got_dinp3.data(), c.N, c.C);
        expect_close("layernorm_backward dinp column sums (fp32)" + tag, d_ds.get(), ds,
                     kTolFp32Long);
    }
}

TEST(CudaLayernorm, Fp32) {
    check_layernorm<float>(kTolFp32, 5100);
}
TEST(CudaLayernorm, Bf16) {
    check_layernorm<bf16>(kTolBf16, 5200);
}

}  // namespace
}  // namespace agpt::cuda::test
