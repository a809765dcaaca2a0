// The fused, chunked LM head + cross-entropy against the CPU: total loss, dx and dweight, with
// chunks that do not divide N, a chunk larger than N, ignored targets (-1), soft-capped logits
// and per-token gradient weights; and the soft-cap on returned logits (softcap.h).
#include "kernels/cpu/cross_entropy.h"
#include "cuda_test_util.h"
#include "kernels/cpu/softcap.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/softcap.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_cross_entropy(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, C, V, chunk;
        float softcap;
    };
    const Case cases[] = {{70, 64, 1000, 32, 0.0f},
                          {33, 48, 517, 64, 0.0f},
                          {50, 32, 300, 16, 3.0f},
                          {8, 128, 32000, 3, 0.0f}};
    Blas blas;
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const auto x = representable<T>(random_floats(static_cast<std::size_t>(c.N) * c.C, rng));
        const auto w = representable<T>(random_floats(static_cast<std::size_t>(c.V) * c.C, rng));
        auto targets = random_tokens(c.N, c.V, rng);
        for (int i = 0; i < c.N; i += 7) targets[i] = -1;  // ignored positions
        const auto dx0 = representable<T>(random_floats(x.size(), rng));
        const auto dw0 = random_floats(w.size(), rng);
        const float grad_scale = 1.0f / static_cast<float>(c.N);
        char buf[96];
        std::snprintf(buf, sizeof buf, " N%d C%d V%d chunk%d%s", c.N, c.C, c.V, c.chunk,
                      c.softcap > 0 ? " softcap" : "");
        const std::string tag = buf;

        std::vector<float> dx = dx0, dw = dw0;
        std::vector<float> scratch(cpu::lm_head_scratch_size(c.chunk, c.V));
        const double loss = cpu::lm_head_cross_entropy<float>(
            dx.data(), dw.data(), x.data(), w.data(), targets.data(), c.N, c.C, c.V, grad_scale,
            scratch.data(), c.chunk, c.softcap);

        Dev<T> d_x(x), d_w(w), d_dx(dx0);
        Dev<float> d_dw(dw0);
        auto d_losses = Dev<float>::poisoned(c.N);
        DeviceBuffer<int32_t> d_targets = upload(targets);
        DeviceBuffer<unsigned char> d_scratch(lm_head_scratch_bytes<T>(c.chunk, c.V));
        lm_head_cross_entropy<T>(blas, d_losses.ptr(), d_dx.ptr(), d_dw.ptr(), d_x.ptr(), d_w.ptr(),
                                 d_targets.data(), c.N, c.C, c.V, grad_scale, d_scratch.data(),
                                 c.chunk, c.softcap);
        const double gpu_loss = sum_losses(d_losses.ptr(), c.N, blas.stream());
        expect_close("loss (sum)" + tag, {static_cast<float>(gpu_loss)}, {static_cast<float>(loss)},
                     kTolFp32);
        expect_close("dx" + tag, d_dx.get(), dx, tol);
        expect_close("dweight (fp32)" + tag, d_dw.get(), dw, tol);

        // Forward only: no gradients touched, same loss.
        auto d_losses2 = Dev<float>::poisoned(c.N);
        lm_head_cross_entropy<T>(blas, d_losses2.ptr(), nullptr, nullptr, d_x.ptr(), d_w.ptr(),
                                 d_targets.data(), c.N, c.C, c.V, grad_scale, d_scratch.data(),
                                 c.chunk, c.softcap);
        expect_close("per-token losses, forward only" + tag, d_losses2.get(), d_losses.get(),
                     kTolFp32);

        // Per-token weights (zeros and negatives among them), as policy-gradient training uses
        // them: the gradient of grad_scale · Σ w_i·loss_i; the losses do not change.
        auto row_w = random_floats(c.N, rng, -1.0f, 2.0f);
        for (int i = 2; i < c.N; i += 5) row_w[i] = 0.0f;
        std::vector<float> dx_w = dx0, dw_w = dw0;
        cpu::lm_head_cross_entropy<float>(dx_w.data(), dw_w.data(), x.data(), w.data(),
                                          targets.data(), c.N, c.C, c.V, grad_scale, scratch.data(),
                                          c.chunk, c.softcap, row_w.data());
        Dev<T> d_dx_w(dx0);
        Dev<float> d_dw_w(dw0), d_row_w(row_w);
        auto d_losses3 = Dev<float>::poisoned(c.N);
        lm_head_cross_entropy<T>(blas, d_losses3.ptr(), d_dx_w.ptr(), d_dw_w.ptr(), d_x.ptr(),
                                 d_w.ptr(), d_targets.data(), c.N, c.C, c.V, grad_scale,
                                 d_scratch.data(), c.chunk, c.softcap, d_row_w.ptr());
        expect_close("per-token losses, weighted" + tag, d_losses3.get(), d_losses.get(), kTolFp32);
        expect_close("dx, weighted" + tag, d_dx_w.get(), dx_w, tol);
        expect_close("dweight, weighted" + tag, d_dw_w.get(), dw_w, tol);
    }
}

TEST(CudaCrossEntropy, Fp32) {
    check_cross_entropy<float>(kTolFp32Long, 5100);
}
TEST(CudaCrossEntropy, Bf16) {
    check_cross_entropy<bf16>(kTolBf16, 5200);
}

TEST(CudaSoftcap, ReturnedLogitsMatchCpu) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Rng rng(5300);
    const auto x = random_floats(1000, rng, -20.0f, 20.0f);
    for (const float cap : {0.0f, 3.0f, 30.0f}) {
        std::vector<float> ref = x;
        cpu::softcap_forward<float>(ref.data(), static_cast<long>(ref.size()), cap);
        Dev<float> d_x(x);
        softcap_forward(d_x.ptr(), static_cast<long>(x.size()), cap);
        expect_close("softcap_forward cap " + std::to_string(cap), d_x.get(), ref, kTolFp32);
    }
}

}  // namespace
}  // namespace agpt::cuda::test
