// The fused, chunked LM heads + cross-entropy (fp32 logits: cross_entropy.h; bf16 logits:
// model_ops.h) against the CPU: total loss, dx and dweight, with chunks that do not divide N, a
// chunk larger than N, ignored targets (-1), soft-capped logits and per-token gradient weights;
// and the soft-cap on returned logits (softcap.h).
#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>

#include "cuda_test_util.h"
#include "kernels/cpu/softcap.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/model_ops.h"
#include "kernels/cuda/softcap.h"

namespace agpt::cuda::test {
namespace {

struct HeadCase {
    int N, C, V, chunk;
    float softcap;
};

// One fused head (run: lm_head_cross_entropy<T> or the bf16-logits head) against the CPU's fp32
// head on the same T-representable inputs: the summed loss, dx and dweight (accumulated onto
// start values, random or zero), the per-token losses of a forward-only call (within
// repeat_tol of the first call's), and with per-token gradient weights (zeros and negatives
// among them, as policy-gradient training uses them: the gradient of grad_scale · Σ w_i·loss_i;
// the losses do not change).
struct HeadTolerances {
    double loss, grads, repeat;
    bool zero_start;  // bf16 rounding of a larger accumulated start would hide the head's error
};
template <typename T, typename Run>
void check_head(const std::string& what, std::span<const HeadCase> cases, std::size_t scratch_bytes,
                const HeadTolerances& tol, uint64_t seed, Run run) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Blas blas;
    int case_id = 0;
    for (const HeadCase& c : cases) {
        Rng rng(seed + case_id++);
        const auto x = representable<T>(random_floats(static_cast<std::size_t>(c.N) * c.C, rng));
        const auto w = representable<T>(random_floats(static_cast<std::size_t>(c.V) * c.C, rng));
        auto targets = random_tokens(c.N, c.V, rng);
        for (int i = 0; i < c.N; i += 7) targets[i] = -1;  // ignored positions
        const auto dx0 = tol.zero_start ? std::vector<float>(x.size(), 0.0f)
                                        : representable<T>(random_floats(x.size(), rng));
        const auto dw0 =
            tol.zero_start ? std::vector<float>(w.size(), 0.0f) : random_floats(w.size(), rng);
        const float grad_scale = 1.0f / static_cast<float>(c.N);
        char buf[96];
        std::snprintf(buf, sizeof buf, " N%d C%d V%d chunk%d%s", c.N, c.C, c.V, c.chunk,
                      c.softcap > 0 ? " softcap" : "");
        const std::string tag = what + buf;

        std::vector<float> dx = dx0, dw = dw0;
        std::vector<float> scratch(cpu::lm_head_scratch_size(c.chunk, c.V));
        const double loss = cpu::lm_head_cross_entropy<float>(
            dx.data(), dw.data(), x.data(), w.data(), targets.data(), c.N, c.C, c.V, grad_scale,
            scratch.data(), c.chunk, c.softcap);

        Dev<T> d_x(x), d_w(w), d_dx(dx0);
        Dev<float> d_dw(dw0);
        auto d_losses = Dev<float>::poisoned(c.N);
        DeviceBuffer<int32_t> d_targets = upload(targets);
        DeviceBuffer<unsigned char> d_scratch(scratch_bytes);
        auto head = [&](float* losses, T* hdx, float* hdw, const float* row_scale) {
            run(blas, losses, hdx, hdw, d_x.ptr(), d_w.ptr(), d_targets.data(), c, grad_scale,
                d_scratch.data(), row_scale);
        };
        head(d_losses.ptr(), d_dx.ptr(), d_dw.ptr(), nullptr);
        const double gpu_loss = sum_losses(d_losses.ptr(), c.N, blas.stream());
        expect_close("loss (sum)" + tag, {static_cast<float>(gpu_loss)}, {static_cast<float>(loss)},
                     tol.loss);
        expect_close("dx" + tag, d_dx.get(), dx, tol.grads);
        expect_close("dweight (fp32)" + tag, d_dw.get(), dw, tol.grads);

        // Forward only: no gradients touched, the same losses.
        auto d_losses2 = Dev<float>::poisoned(c.N);
        head(d_losses2.ptr(), nullptr, nullptr, nullptr);
        expect_close("per-token losses, forward only" + tag, d_losses2.get(), d_losses.get(),
                     tol.repeat);

        auto row_w = random_floats(c.N, rng, -1.0f, 2.0f);
        for (int i = 2; i < c.N; i += 5) row_w[i] = 0.0f;
        std::vector<float> dx_w = dx0, dw_w = dw0;
        cpu::lm_head_cross_entropy<float>(dx_w.data(), dw_w.data(), x.data(), w.data(),
                                          targets.data(), c.N, c.C, c.V, grad_scale, scratch.data(),
                                          c.chunk, c.softcap, row_w.data());
        Dev<T> d_dx_w(dx0);
        Dev<float> d_dw_w(dw0), d_row_w(row_w);
        auto d_losses3 = Dev<float>::poisoned(c.N);
        head(d_losses3.ptr(), d_dx_w.ptr(), d_dw_w.ptr(), d_row_w.ptr());
        expect_close("per-token losses, weighted" + tag, d_losses3.get(), d_losses.get(),
                     tol.repeat);
        expect_close("dx, weighted" + tag, d_dx_w.get(), dx_w, tol.grads);
        expect_close("dweight, weighted" + tag, d_dw_w.get(), dw_w, tol.grads);
    }
}

const HeadCase kHeadCases[] = {{70, 64, 1000, 32, 0.0f},
                               {33, 48, 517, 64, 0.0f},
                               {50, 32, 300, 16, 3.0f},
                               {8, 128, 32000, 3, 0.0f}};

template <typename T>
void check_cross_entropy(double tol, uint64_t seed) {
    std::size_t scratch = 0;
    for (const HeadCase& c : kHeadCases)
        scratch = std::max(scratch, lm_head_scratch_bytes<T>(c.chunk, c.V));
    check_head<T>("", kHeadCases, scratch, {kTolFp32, tol, kTolFp32, false}, seed,
                  [](Blas& blas, float* losses, T* dx, float* dw, const T* x, const T* w,
                     const int32_t* targets, const HeadCase& c, float grad_scale, void* scratch,
                     const float* row_scale) {
                      lm_head_cross_entropy<T>(blas, losses, dx, dw, x, w, targets, c.N, c.C, c.V,
                                               grad_scale, scratch, c.chunk, c.softcap, row_scale);
                  });
}

TEST(CudaCrossEntropy, Fp32) {
    check_cross_entropy<float>(kTolFp32Long, 5100);
}
TEST(CudaCrossEntropy, Bf16) {
    check_cross_entropy<bf16>(kTolBf16, 5200);
}

// The bf16-logits head (model_ops.h) against the CPU's fp32 head: the logits' bf16 rounding is
// the difference; the repeated calls' losses are bit-equal. V 1000 (a multiple of 8, not of the
// 64 that rows are padded to); V 517 (packs of 8, then a tail of 5, rows 7 elements apart from
// the padding); chunks that do not divide N; soft-capped logits on both.
TEST(CudaCrossEntropy, Bf16LogitsHead) {
    const HeadCase cases[] = {{70, 64, 1000, 32, 0.0f},
                              {33, 48, 517, 64, 0.0f},
                              {8, 128, 32000, 3, 0.0f},
                              {40, 64, 1000, 16, 3.0f},
                              {21, 32, 517, 8, 2.0f}};
    std::size_t scratch = 0;
    for (const HeadCase& c : cases)
        scratch = std::max(scratch, lm_head_bf16_logits_scratch_bytes(c.chunk, c.V));
    check_head<bf16>(", bf16 logits", cases, scratch, {kTolBf16, 2e-2, 0.0, true}, 8900,
                     [](Blas& blas, float* losses, bf16* dx, float* dw, const bf16* x,
                        const bf16* w, const int32_t* targets, const HeadCase& c, float grad_scale,
                        void* scratch, const float* row_scale) {
                         lm_head_cross_entropy_bf16_logits(blas, losses, dx, dw, x, w, targets, c.N,
                                                           c.C, c.V, grad_scale, scratch, c.chunk,
                                                           c.softcap, row_scale);
                     });
}

// The vocabulary-parallel head as rank r of 2: this rank's rows on the device, the other
// rank's part of each reduction (its rows' max, Σexp at the combined max and target logit)
// computed on the host from the full head, so one process checks the combination. The
// losses equal the full head's (CPU), dweight its rows' part of the full dweight, and the two
// ranks' dx sum to the full dx.
template <typename T>
void check_vocab_parallel_cross_entropy(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const int N = 37, C = 24, V = 101, chunk = 16;
    Blas blas;
    for (const float cap : {0.0f, 2.5f}) {
        Rng rng(seed);
        const auto x = representable<T>(random_floats(static_cast<std::size_t>(N) * C, rng));
        const auto w = representable<T>(random_floats(static_cast<std::size_t>(V) * C, rng));
        auto targets = random_tokens(N, V, rng);
        for (int i = 0; i < N; i += 6) targets[i] = -1;
        auto row_w = random_floats(N, rng, -1.0f, 2.0f);
        const float grad_scale = 1.0f / static_cast<float>(N);
        const std::string tag = cap > 0 ? " softcap" : "";

        std::vector<float> dx(x.size(), 0.0f), dw(w.size(), 0.0f);
        std::vector<float> scratch(cpu::lm_head_scratch_size(chunk, V));
        const double loss = cpu::lm_head_cross_entropy<float>(
            dx.data(), dw.data(), x.data(), w.data(), targets.data(), N, C, V, grad_scale,
            scratch.data(), chunk, cap, row_w.data());
        auto logit = [&](int i, int v) {  // the full head's capped logit, on the host
            double z = 0.0;
            for (int c = 0; c < C; c++)
                z += static_cast<double>(x[static_cast<std::size_t>(i) * C + c]) *
                     w[static_cast<std::size_t>(v) * C + c];
            return cap > 0 ? cap * std::tanh(z / cap) : z;
        };
        DeviceBuffer<int32_t> d_targets = upload(targets);
        Dev<float> d_row_w(row_w);
        Dev<T> d_x(x);
        std::vector<float> dx_sum(x.size(), 0.0f);
        for (int rank = 0; rank < 2; rank++) {
            const int first = rank == 0 ? 0 : 51, rows = rank == 0 ? 51 : V - 51;
            const int other_first = rank == 0 ? 51 : 0, other_rows = V - rows;
            const std::vector<float> w_local(w.begin() + static_cast<long>(first) * C,
                                             w.begin() + static_cast<long>(first + rows) * C);
            int start = 0;
            std::vector<float> row_max;
            const GroupReduce reduce = [&](float* data, std::size_t n, bool max) {
                std::vector<float> h(n);
                AGPT_CUDA_CHECK(cudaStreamSynchronize(blas.stream()));
                AGPT_CUDA_CHECK(
                    cudaMemcpy(h.data(), data, n * sizeof(float), cudaMemcpyDeviceToHost));
                const int rows_here = max ? static_cast<int>(n) : static_cast<int>(n / 2);
                for (int i = 0; i < rows_here; i++) {
                    const int row = start + i;
                    if (max) {
                        double m = -1e30;
                        for (int v = 0; v < other_rows; v++)
                            m = std::max(m, logit(row, other_first + v));
                        h[i] = std::max(h[i], static_cast<float>(m));
                        continue;
                    }
                    double sum = 0.0;
                    for (int v = 0; v < other_rows; v++)
                        sum += std::exp(logit(row, other_first + v) - row_max[i]);
                    h[i] += static_cast<float>(sum);
                    const int t = targets[row];
                    if (t >= other_first && t < other_first + other_rows)
                        h[rows_here + i] += static_cast<float>(logit(row, t));
                }
                if (max) row_max = h;
                AGPT_CUDA_CHECK(
                    cudaMemcpy(data, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
                if (!max) start += rows_here;  // the chunk's last reduction
            };
            Dev<T> d_w(w_local), d_dx(std::vector<float>(x.size(), 0.0f));
            Dev<float> d_dw(std::vector<float>(w_local.size(), 0.0f));
            auto d_losses = Dev<float>::poisoned(N);
            DeviceBuffer<unsigned char> d_scratch(vocab_parallel_scratch_bytes<T>(chunk, rows));
            vocab_parallel_cross_entropy<T>(blas, d_losses.ptr(), d_dx.ptr(), d_dw.ptr(), d_x.ptr(),
                                            d_w.ptr(), d_targets.data(), N, C, first, rows,
                                            grad_scale, d_scratch.data(), chunk, cap, d_row_w.ptr(),
                                            reduce);
            const std::string rtag = tag + " rank " + std::to_string(rank);
            const double gpu_loss = sum_losses(d_losses.ptr(), N, blas.stream());
            expect_close("vocab-parallel loss (sum)" + rtag, {static_cast<float>(gpu_loss)},
                         {static_cast<float>(loss)}, kTolFp32);
            const std::vector<float> dw_rows(dw.begin() + static_cast<long>(first) * C,
                                             dw.begin() + static_cast<long>(first + rows) * C);
            expect_close("vocab-parallel dweight rows" + rtag, d_dw.get(), dw_rows, tol);
            const auto dx_part = d_dx.get();
            for (std::size_t i = 0; i < dx_sum.size(); i++) dx_sum[i] += dx_part[i];
        }
        expect_close("vocab-parallel dx summed over the ranks" + tag, dx_sum, dx, tol);
    }
}

TEST(CudaCrossEntropy, VocabParallelFp32) {
    check_vocab_parallel_cross_entropy<float>(kTolFp32Long, 5300);
}
TEST(CudaCrossEntropy, VocabParallelBf16) {
    check_vocab_parallel_cross_entropy<bf16>(kTolBf16, 5400);
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
