// The GPU model's own kernels (kernels/cuda/model_ops.h) against the CPU: the vectorised SwiGLU
// (forward; backward that overwrites dh13), the vectorised RMSNorm backward (accumulating dinp
// and dweight), global-norm clipping and the bf16 cast. Shapes include ones that take the
// fallback path (widths that are not a multiple of the vector).
#include "kernels/cuda/model_ops.h"
#include "cuda_test_util.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"
#include "optim/grad_clip.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_swiglu_vec(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, F;
    };
    const Case cases[] = {{7, 64}, {3, 2048}, {5, 40}, {4, 13}};  // 40: bf16 falls back; 13: both
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.F;
        const auto h13 = representable<T>(random_floats(2 * n, rng, -3.0f, 3.0f));
        const auto dout = representable<T>(random_floats(n, rng));
        const std::string tag = " N" + std::to_string(c.N) + " F" + std::to_string(c.F);
        std::vector<float> out(n), dh(2 * n, 0.0f);
        cpu::swiglu_forward<float>(out.data(), h13.data(), c.N, c.F);
        cpu::swiglu_backward<float>(dh.data(), dout.data(), h13.data(), c.N, c.F);

        Dev<T> d_h13(h13), d_dout(dout);
        auto d_out = Dev<T>::poisoned(n);
        auto d_dh = Dev<T>::poisoned(2 * n);  // overwritten, so NaN poison must disappear
        swiglu_forward_vec<T>(d_out.ptr(), d_h13.ptr(), c.N, c.F);
        expect_close("swiglu_forward_vec" + tag, d_out.get(), out, tol);
        swiglu_backward_overwrite<T>(d_dh.ptr(), d_dout.ptr(), d_h13.ptr(), c.N, c.F);
        expect_close("swiglu_backward_overwrite" + tag, d_dh.get(), dh, tol);
    }
}

TEST(CudaModelOps, SwigluVecFp32) {
    check_swiglu_vec<float>(kTolFp32, 8100);
}
TEST(CudaModelOps, SwigluVecBf16) {
    check_swiglu_vec<bf16>(kTolBf16, 8200);
}

template <typename T>
void check_rope_vec(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int B, T_len, n_heads, hd, row_stride;
    };
    // Heads inside wider rows (the q|k heads of a fused qkv row); hd 12: bf16 falls back, hd 10:
    // both; an odd row stride falls back.
    const Case cases[] = {{2, 9, 6, 16, 128},
                          {1, 5, 3, 64, 320},
                          {2, 4, 2, 12, 40},
                          {1, 3, 2, 10, 30},
                          {1, 4, 2, 16, 33}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const auto x0 = representable<T>(
            random_floats(static_cast<std::size_t>(c.B) * c.T_len * c.row_stride, rng));
        const int half = c.hd / 2;
        std::vector<float> cos_t(static_cast<std::size_t>(c.T_len) * half), sin_t(cos_t.size());
        cpu::rope_tables<float>(cos_t.data(), sin_t.data(), c.T_len, c.hd, 10000.0);
        DeviceBuffer<float> d_cos = upload(cos_t), d_sin = upload(sin_t);
        const std::string tag =
            " hd" + std::to_string(c.hd) + " stride" + std::to_string(c.row_stride);
        std::vector<float> x = x0;
        cpu::rope_forward<float>(x.data(), cos_t.data(), sin_t.data(), c.B, c.T_len, c.n_heads,
                                 c.hd, c.row_stride);
        Dev<T> d_x(x0);
        rope_forward_vec<T>(d_x.ptr(), d_cos.data(), d_sin.data(), c.B, c.T_len, c.n_heads, c.hd,
                            c.row_stride);
        expect_close("rope_forward_vec" + tag, d_x.get(), x, tol);
        std::vector<float> dx = x0;
        cpu::rope_backward<float>(dx.data(), cos_t.data(), sin_t.data(), c.B, c.T_len, c.n_heads,
                                  c.hd, c.row_stride);
        Dev<T> d_dx(x0);
        rope_backward_vec<T>(d_dx.ptr(), d_cos.data(), d_sin.data(), c.B, c.T_len, c.n_heads, c.hd,
                             c.row_stride);
        expect_close("rope_backward_vec" + tag, d_dx.get(), dx, tol);
    }
}

TEST(CudaModelOps, RopeVecFp32) {
    check_rope_vec<float>(kTolFp32, 8700);
}
TEST(CudaModelOps, RopeVecBf16) {
    check_rope_vec<bf16>(kTolBf16, 8800);
}

TEST(CudaModelOps, GradNormClipMatchesCpu) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Rng rng(8500);
    for (const std::size_t n : {std::size_t{1}, std::size_t{4096}, std::size_t{10000}}) {
        for (const double max_norm : {0.0, 0.5, 1e9}) {
            const auto g = random_floats(n, rng);
            std::vector<float> ref = g;
            const double ref_norm = clip_grad_norm(ref.data(), n, max_norm);
            Dev<float> d_g(g);
            DeviceBuffer<double> d_norm(1);
            DeviceBuffer<unsigned char> scratch(grad_norm_scratch_bytes(n));
            grad_norm_clip(d_g.ptr(), n, max_norm, d_norm.data(), scratch.data());
            double norm = 0.0;
            AGPT_CUDA_CHECK(cudaDeviceSynchronize());
            d_norm.download(&norm);
            const std::string tag =
                " n" + std::to_string(n) + " max_norm " + std::to_string(max_norm);
            expect_close("grad norm" + tag, {static_cast<float>(norm)},
                         {static_cast<float>(ref_norm)}, 1e-7);
            expect_close("clipped gradients" + tag, d_g.get(), ref, 1e-7);
        }
    }
}

// ZeRO-1's clipping: a norm summed elsewhere (the part's norm scaled as if the whole gradient
// were 3× or 0.01× the part's squared norm), applied bit for bit as the CPU applies it.
TEST(CudaModelOps, ClipToNormMatchesCpu) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Rng rng(8510);
    const std::size_t n = 5000;
    for (const double max_norm : {0.0, 0.5, 1e9}) {
        for (const double whole : {3.0, 0.01}) {
            const auto g = random_floats(n, rng);
            const double norm = std::sqrt(whole) * agpt::global_grad_norm(g.data(), n);
            std::vector<float> ref = g;
            agpt::clip_to_norm(ref.data(), n, norm, max_norm);
            Dev<float> d_g(g);
            DeviceBuffer<double> d_norm(1);
            d_norm.upload(&norm);
            clip_to_norm(d_g.ptr(), n, d_norm.data(), max_norm);
            AGPT_CUDA_CHECK(cudaDeviceSynchronize());
            const std::string tag =
                " max_norm " + std::to_string(max_norm) + " norm " + std::to_string(norm);
            expect_close("clipped gradients" + tag, d_g.get(), ref, 0.0);
        }
    }
}

TEST(CudaModelOps, CastToBf16RoundsToNearestEven) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Rng rng(8600);
    const auto x = random_floats(1000, rng, -100.0f, 100.0f);
    Dev<float> d_x(x);
    auto d_y = Dev<bf16>::poisoned(x.size());
    cast_to_bf16(d_y.ptr(), d_x.ptr(), x.size());
    expect_close("cast_to_bf16", d_y.get(), representable<bf16>(x), 0.0);
    // And back: bf16 values widen to fp32 exactly.
    auto d_z = Dev<float>::poisoned(x.size());
    cast_to_float(d_z.ptr(), d_y.ptr(), x.size());
    expect_close("cast_to_float", d_z.get(), representable<bf16>(x), 0.0);
}

}  // namespace
}  // namespace agpt::cuda::test
