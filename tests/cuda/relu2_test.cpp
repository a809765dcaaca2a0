// ReLU² (the two-matrix FFN's activation) forward and backward against the CPU: the backward
// accumulating (the CPU's semantics) and overwriting (the GPU model's).
#include "kernels/cpu/relu2.h"
#include "cuda_test_util.h"
#include "kernels/cuda/relu2.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_relu2(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, F;
    };
    const Case cases[] = {{37, 64}, {3, 333}, {1, 1}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.F;
        // About half of h is negative: both sides of the kink.
        const auto h = representable<T>(random_floats(n, rng, -3.0f, 3.0f));
        const auto dout = representable<T>(random_floats(n, rng));
        const auto dh0 = representable<T>(random_floats(n, rng));
        const std::string tag = " N" + std::to_string(c.N) + " F" + std::to_string(c.F);

        std::vector<float> out(n), dh = dh0, dh_only(n, 0.0f);
        cpu::relu2_forward<float>(out.data(), h.data(), c.N, c.F);
        cpu::relu2_backward<float>(dh.data(), dout.data(), h.data(), c.N, c.F);
        cpu::relu2_backward<float>(dh_only.data(), dout.data(), h.data(), c.N, c.F);

        Dev<T> d_h(h), d_dout(dout), d_dh(dh0);
        auto d_out = Dev<T>::poisoned(n);
        relu2_forward<T>(d_out.ptr(), d_h.ptr(), c.N, c.F);
        expect_close("relu2_forward" + tag, d_out.get(), out, tol);
        relu2_backward<T>(d_dh.ptr(), d_dout.ptr(), d_h.ptr(), c.N, c.F);
        expect_close("relu2_backward (accumulate)" + tag, d_dh.get(), dh, tol);
        auto d_dh_only = Dev<T>::poisoned(n);
        relu2_backward<T>(d_dh_only.ptr(), d_dout.ptr(), d_h.ptr(), c.N, c.F, false);
        expect_close("relu2_backward (overwrite)" + tag, d_dh_only.get(), dh_only, tol);
    }
}

TEST(CudaRelu2, Fp32) {
    check_relu2<float>(kTolFp32, 2500);
}
TEST(CudaRelu2, Bf16) {
    check_relu2<bf16>(kTolBf16, 2600);
}

}  // namespace
}  // namespace agpt::cuda::test
