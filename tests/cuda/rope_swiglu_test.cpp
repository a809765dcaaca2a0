// RoPE (in place on the q and k heads of fused qkv rows) and SwiGLU (fused w1|w3 rows),
// forward and backward, against the CPU.
#include "cuda_test_util.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/swiglu.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_rope(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int B, T_len, H, KV, hd;
    };
    const Case cases[] = {{2, 37, 4, 2, 64}, {1, 70, 2, 2, 128}, {3, 5, 4, 1, 16}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const int row = (c.H + 2 * c.KV) * c.hd, heads = c.H + c.KV;
        const std::size_t n = static_cast<std::size_t>(c.B) * c.T_len * row;
        const std::size_t half_table = static_cast<std::size_t>(c.T_len) * c.hd / 2;
        std::vector<float> cos_t(half_table), sin_t(half_table);
        cpu::rope_tables<float>(cos_t.data(), sin_t.data(), c.T_len, c.hd, 5e5);
        const auto x0 = representable<T>(random_floats(n, rng));
        const std::string tag = " B" + std::to_string(c.B) + " T" + std::to_string(c.T_len) +
                                " hd" + std::to_string(c.hd);
        DeviceBuffer<float> d_cos = upload(cos_t), d_sin = upload(sin_t);

        // Whole rows are compared: the value heads must come back untouched.
        std::vector<float> x = x0;
        cpu::rope_forward<float>(x.data(), cos_t.data(), sin_t.data(), c.B, c.T_len, heads, c.hd,
                                 row);
        Dev<T> d_x(x0);
        rope_forward<T>(d_x.ptr(), d_cos.data(), d_sin.data(), c.B, c.T_len, heads, c.hd, row);
        expect_close("rope_forward" + tag, d_x.get(), x, tol);

        std::vector<float> dx = x0;
        cpu::rope_backward<float>(dx.data(), cos_t.data(), sin_t.data(), c.B, c.T_len, heads, c.hd,
                                  row);
        Dev<T> d_dx(x0);
        rope_backward<T>(d_dx.ptr(), d_cos.data(), d_sin.data(), c.B, c.T_len, heads, c.hd, row);
        expect_close("rope_backward" + tag, d_dx.get(), dx, tol);
    }
}

TEST(CudaRope, Fp32) {
    check_rope<float>(kTolFp32, 2100);
}
TEST(CudaRope, Bf16) {
    check_rope<bf16>(kTolBf16, 2200);
}

template <typename T>
void check_swiglu(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, F;
    };
    const Case cases[] = {{37, 64}, {3, 333}, {64, 768}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.F;
        const auto h13 = representable<T>(random_floats(2 * n, rng, -4.0f, 4.0f));
        const auto dout = representable<T>(random_floats(n, rng));
        const auto dh0 = representable<T>(random_floats(2 * n, rng));
        const std::string tag = " N" + std::to_string(c.N) + " F" + std::to_string(c.F);

        std::vector<float> out(n), dh = dh0;
        cpu::swiglu_forward<float>(out.data(), h13.data(), c.N, c.F);
        cpu::swiglu_backward<float>(dh.data(), dout.data(), h13.data(), c.N, c.F);

        Dev<T> d_h13(h13), d_dout(dout), d_dh(dh0);
        auto d_out = Dev<T>::poisoned(n);
        swiglu_forward<T>(d_out.ptr(), d_h13.ptr(), c.N, c.F);
        expect_close("swiglu_forward" + tag, d_out.get(), out, tol);
        swiglu_backward<T>(d_dh.ptr(), d_dout.ptr(), d_h13.ptr(), c.N, c.F);
        expect_close("swiglu_backward dh13" + tag, d_dh.get(), dh, tol);
    }
}

TEST(CudaSwiglu, Fp32) {
    check_swiglu<float>(kTolFp32, 2300);
}
TEST(CudaSwiglu, Bf16) {
    check_swiglu<bf16>(kTolBf16, 2400);
}

}  // namespace
}  // namespace agpt::cuda::test
