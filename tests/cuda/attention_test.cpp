// Flash attention (causal, GQA) forward and backward against the CPU kernel: odd T (not a
// multiple of the 32- or 64-row tiles), T = 1 and 1024, head sizes 16, 64, 80, 128, 160 and 192
// (MLA's padded heads), GQA ratios 1, 2 and 4, and soft-capped scores. bf16 with hd 64, 128 or
// 192 runs the tensor-core kernels (attention_tc.cu); fp32, the other head sizes and
// AGPT_ATTN_KERNEL=simple the plain ones, which the Bf16SimpleKernel test covers for bf16;
// Bf16SplitBackward covers AGPT_ATTN_BACKWARD=split, Bf16WideForward AGPT_ATTN_FORWARD=wide.
#include <cstdlib>
#include <cstring>
#include <span>

#include "../scoped_env.h"
#include "core/error.h"
#include "cuda_test_util.h"
#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_plan.h"

namespace agpt::cuda::test {
namespace {

struct Case {
    int B, T, H, KV, hd;
    float softcap;
};
const Case kCases[] = {
    {2, 37, 4, 4, 64, 0.0f},    // GQA 1, T not a multiple of the tile
    {1, 100, 8, 2, 128, 0.0f},  // GQA 4, hd 128
    {2, 64, 4, 1, 64, 0.0f},    // GQA 4 (one kv head), T a multiple of the tile
    {1, 129, 4, 4, 128, 0.0f},  // one row past a tile boundary
    {1, 1, 2, 1, 64, 0.0f},     // a single token
    {2, 45, 4, 2, 16, 0.0f},    // small heads
    {1, 70, 2, 1, 80, 0.0f},    // hd not a multiple of 32
    {1, 50, 4, 2, 64, 0.5f},    // soft-capped scores
};
// Heads above 128 (the plain kernels' widest tiles, padded to 192), at the emulator's scale: two
// query tiles, the second partial.
const Case kWideCases[] = {
    {1, 40, 4, 2, 192, 0.0f},  // MLA's padded head (qk_nope 128 + qk_rope 64), GQA 2
    {1, 37, 4, 2, 160, 0.5f},  // padded to 192, soft-capped
};
// Longer sequences for the tensor-core kernels (bf16 only: the emulation of the plain kernels
// at these lengths would double the suite's time and adds nothing the cases above miss).
const Case kLongCases[] = {
    {1, 1024, 2, 2, 64, 0.0f},   // GQA 1, 16 tiles of 64
    {1, 1024, 1, 1, 128, 0.0f},  // hd 128
    {2, 200, 8, 2, 128, 0.0f},   // GQA 4, T not a multiple of 64 (nor of 32)
    {1, 333, 4, 1, 64, 0.0f},    // GQA 4, hd 64, T odd
    {1, 150, 2, 1, 128, 0.7f},   // soft-capped, hd 128
    {1, 150, 4, 2, 192, 0.0f},   // hd 192 (16-row query and key tiles in the backward), GQA 2
    {1, 70, 2, 1, 192, 0.7f},    // soft-capped, hd 192
};

template <typename T>
void check_attention(double tol, uint64_t seed, std::span<const Case> cases) {
    AGPT_REQUIRE_CUDA_DEVICE();
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const long row = static_cast<long>(c.H + 2 * c.KV) * c.hd;
        const std::size_t n_qkv = static_cast<std::size_t>(c.B) * c.T * row;
        const std::size_t n_out = static_cast<std::size_t>(c.B) * c.T * c.H * c.hd;
        const std::size_t n_lse = static_cast<std::size_t>(c.B) * c.H * c.T;
        // Scale 2 gives peaked rows (scores up to ~±10) as well as flat ones.
        const auto qkv = representable<T>(random_floats(n_qkv, rng, -2.0f, 2.0f));
        const auto dout = representable<T>(random_floats(n_out, rng));
        char buf[96];
        std::snprintf(buf, sizeof buf, " B%d T%d H%d KV%d hd%d%s", c.B, c.T, c.H, c.KV, c.hd,
                      c.softcap > 0 ? " softcap" : "");
        const std::string tag = buf;

        std::vector<float> out(n_out), lse(n_lse);
        cpu::attention_forward<float>(out.data(), lse.data(), qkv.data(), c.B, c.T, c.H, c.KV, c.hd,
                                      c.softcap);
        Dev<T> d_qkv(qkv);
        auto d_out = Dev<T>::poisoned(n_out);
        auto d_lse = Dev<float>::poisoned(n_lse);
        attention_forward<T>(d_out.ptr(), d_lse.ptr(), d_qkv.ptr(), c.B, c.T, c.H, c.KV, c.hd,
                             c.softcap);
        expect_close("attention_forward out" + tag, d_out.get(), out, tol);
        expect_close("attention_forward lse" + tag, d_lse.get(), lse, kTolFp32);

        // The backward takes the CPU's forward results (as T) on both sides. It writes every
        // element of dqkv (a poisoned start must not show), where the CPU's accumulates.
        const auto out_t = representable<T>(out);
        std::vector<float> dqkv(n_qkv, 0.0f);
        cpu::attention_backward<float>(dqkv.data(), dout.data(), qkv.data(), out_t.data(),
                                       lse.data(), c.B, c.T, c.H, c.KV, c.hd, c.softcap);
        Dev<T> d_dout(dout), d_out_t(out_t);
        auto d_dqkv = Dev<T>::poisoned(n_qkv);
        Dev<float> d_lse_ref(lse);
        attention_backward<T>(d_dqkv.ptr(), d_dout.ptr(), d_qkv.ptr(), d_out_t.ptr(),
                              d_lse_ref.ptr(), c.B, c.T, c.H, c.KV, c.hd, c.softcap);
        expect_close("attention_backward dqkv" + tag, d_dqkv.get(), dqkv, tol);
    }
}

TEST(CudaAttention, Fp32) {
    check_attention<float>(kTolFp32Long, 4100, kCases);
}
TEST(CudaAttention, Bf16) {
    check_attention<bf16>(kTolBf16, 4200, kCases);
}
TEST(CudaAttention, Fp32WideHeads) {
    check_attention<float>(kTolFp32, 4600, kWideCases);
}
TEST(CudaAttention, Bf16WideHeads) {
    check_attention<bf16>(kTolBf16, 4700, kWideCases);
}
TEST(CudaAttention, Bf16Long) {
    check_attention<bf16>(kTolBf16, 4400, kLongCases);
}

// AGPT_ATTN_KERNEL=simple: the plain kernels on the shapes the tensor-core ones take.
TEST(CudaAttention, Bf16SimpleKernel) {
    const ScopedEnv simple("AGPT_ATTN_KERNEL", "simple");
    const Case cases[] = {kCases[0], kCases[1], kCases[7], kWideCases[0]};
    check_attention<bf16>(kTolBf16, 4500, cases);
}

// AGPT_ATTN_BACKWARD=split (hd 64: dQ summed from per-split partials): one key-tile pair
// (T 37, 64), three splits of 1..2 pairs with an odd tile count (T 333), eight splits of one pair
// (T 1024), GQA 1, 2 and 4, soft-capped scores.
TEST(CudaAttention, Bf16SplitBackward) {
    const ScopedEnv split("AGPT_ATTN_BACKWARD", "split");
    const Case cases[] = {kCases[0],     kCases[2],     kCases[7],
                          kLongCases[0], kLongCases[3], {2, 300, 4, 2, 64, 0.0f}};
    check_attention<bf16>(kTolBf16, 4800, cases);
}

// AGPT_ATTN_FORWARD=wide (hd 64: 128-query tiles, two m-tiles per warp): a tile past T (T 37,
// 64), two (T 200: the second tile's upper half past T), many (T 1024, 333), GQA 1, 2 and 4,
// soft-capped scores.
TEST(CudaAttention, Bf16WideForward) {
    const ScopedEnv wide("AGPT_ATTN_FORWARD", "wide");
    const Case cases[] = {kCases[0],     kCases[2],     kCases[7],
                          kLongCases[0], kLongCases[3], {2, 200, 4, 2, 64, 0.0f}};
    check_attention<bf16>(kTolBf16, 4900, cases);
}

// The wide forward computes each row exactly as the default one does (the same key tiles in the
// same order; the extra fully masked tile adds exact zeros): the same bits, output and lse.
TEST(CudaAttention, Bf16WideForwardEqualsDefaultBitwise) {
    AGPT_REQUIRE_CUDA_DEVICE();
    for (const Case& c : {Case{2, 333, 4, 2, 64, 0.0f}, Case{1, 200, 2, 1, 64, 0.5f}}) {
        Rng rng(5000 + c.T);
        const long row = static_cast<long>(c.H + 2 * c.KV) * c.hd;
        const std::size_t n_out = static_cast<std::size_t>(c.B) * c.T * c.H * c.hd;
        const std::size_t n_lse = static_cast<std::size_t>(c.B) * c.H * c.T;
        Dev<bf16> qkv(random_floats(static_cast<std::size_t>(c.B) * c.T * row, rng, -2.0f, 2.0f));
        std::vector<float> out[2], lse[2];
        for (int wide = 0; wide < 2; wide++) {
            const ScopedEnv mode("AGPT_ATTN_FORWARD", wide ? "wide" : nullptr);
            auto d_out = Dev<bf16>::poisoned(n_out);
            auto d_lse = Dev<float>::poisoned(n_lse);
            attention_forward<bf16>(d_out.ptr(), d_lse.ptr(), qkv.ptr(), c.B, c.T, c.H, c.KV, c.hd,
                                    c.softcap);
            out[wide] = d_out.get();
            lse[wide] = d_lse.get();
        }
        EXPECT_EQ(std::memcmp(out[0].data(), out[1].data(), n_out * sizeof(float)), 0) << c.T;
        EXPECT_EQ(std::memcmp(lse[0].data(), lse[1].data(), n_lse * sizeof(float)), 0) << c.T;
    }
}

// Two runs of the backward give the same bits (no atomics): the plain kernels (fp32) and the
// tensor-core ones (bf16, hd 64; also split).
template <typename S>
void check_deterministic() {
    AGPT_REQUIRE_CUDA_DEVICE();
    const int B = 2, T = 100, H = 8, KV = 2, hd = 64;
    Rng rng(4300);
    const long row = static_cast<long>(H + 2 * KV) * hd;
    const auto qkv = random_floats(static_cast<std::size_t>(B) * T * row, rng);
    const auto dout = random_floats(static_cast<std::size_t>(B) * T * H * hd, rng);
    Dev<S> d_qkv(qkv), d_dout(dout);
    auto d_out = Dev<S>::poisoned(dout.size());
    auto d_lse = Dev<float>::poisoned(static_cast<std::size_t>(B) * H * T);
    attention_forward<S>(d_out.ptr(), d_lse.ptr(), d_qkv.ptr(), B, T, H, KV, hd);
    auto d1 = Dev<S>::poisoned(qkv.size()), d2 = Dev<S>::poisoned(qkv.size());
    attention_backward<S>(d1.ptr(), d_dout.ptr(), d_qkv.ptr(), d_out.ptr(), d_lse.ptr(), B, T, H,
                          KV, hd);
    attention_backward<S>(d2.ptr(), d_dout.ptr(), d_qkv.ptr(), d_out.ptr(), d_lse.ptr(), B, T, H,
                          KV, hd);
    EXPECT_EQ(d1.get(), d2.get());
}
TEST(CudaAttention, BackwardIsDeterministic) {
    check_deterministic<float>();
}
TEST(CudaAttention, Bf16BackwardIsDeterministic) {
    check_deterministic<bf16>();
}
TEST(CudaAttention, Bf16SplitBackwardIsDeterministic) {
    const ScopedEnv split("AGPT_ATTN_BACKWARD", "split");
    check_deterministic<bf16>();
}

// Which kernels each call runs (attention_tc.cu dispatches on these) and the scratch its backward
// takes (what `agpt plan` counts), under each switch. Pure arithmetic: runs without a device.
TEST(CudaAttention, PlanFollowsTheSwitches) {
    const std::size_t rows = std::size_t{32} * 1024 * 12;  // B 32, T 1024, H 12
    const auto gpt2 = [] { return attention_backward_plan(32, 1024, 12, 12, 64, true); };
    const auto llama = [] { return attention_backward_plan(32, 1024, 12, 4, 64, true); };
    {
        const ScopedEnv none("AGPT_ATTN_BACKWARD", nullptr);
        const ScopedEnv f("AGPT_ATTN_FORWARD", nullptr);
        EXPECT_EQ(attention_forward_kernels(64, true), AttentionKernels::tensor_core);
        EXPECT_EQ(gpt2().kernels, AttentionKernels::tensor_core);
        EXPECT_EQ(gpt2().scratch_bytes(), rows * 4);
        EXPECT_EQ(gpt2().dq_partial_bytes, 0u);
        EXPECT_EQ(attention_forward_kernels(64, false), AttentionKernels::plain);
        EXPECT_EQ(attention_backward_plan(2, 37, 4, 4, 64, false).scratch_bytes(), 0u);
        EXPECT_EQ(attention_backward_plan(1, 70, 2, 1, 80, true).kernels, AttentionKernels::plain);
        EXPECT_EQ(attention_backward_plan(1, 40, 4, 2, 192, true).kernels,
                  AttentionKernels::tensor_core);
    }
    {
        const ScopedEnv wide("AGPT_ATTN_FORWARD", "wide");
        EXPECT_EQ(attention_forward_kernels(64, true), AttentionKernels::wide);
        EXPECT_EQ(attention_forward_kernels(128, true), AttentionKernels::tensor_core);
        EXPECT_EQ(attention_forward_kernels(64, false), AttentionKernels::plain);
    }
    {
        // Splits double until ~768 blocks of (split, kv head, batch) or one key-tile pair each.
        const ScopedEnv split("AGPT_ATTN_BACKWARD", "split");
        EXPECT_EQ(gpt2().kernels, AttentionKernels::split);
        EXPECT_EQ(gpt2().dq_splits, 2);  // 2 × 12 × 32 = 768
        EXPECT_EQ(gpt2().dq_partial_bytes, 2 * rows * 64 * 4);
        EXPECT_EQ(gpt2().scratch_bytes(), rows * 4 + 2 * rows * 64 * 4);
        EXPECT_EQ(llama().dq_splits, 8);  // 8 × 4 × 32 = 1024: the 8 pairs of 16 key tiles
        EXPECT_EQ(attention_backward_plan(2, 37, 4, 4, 64, true).dq_splits, 1);
        EXPECT_EQ(attention_backward_plan(1, 333, 4, 1, 64, true).dq_splits, 3);  // 6 tiles
        EXPECT_EQ(attention_backward_plan(1, 100, 8, 2, 128, true).kernels,
                  AttentionKernels::tensor_core);
    }
    {
        const ScopedEnv simple("AGPT_ATTN_KERNEL", "simple");
        const ScopedEnv split("AGPT_ATTN_BACKWARD", "split");
        const ScopedEnv wide("AGPT_ATTN_FORWARD", "wide");
        EXPECT_EQ(attention_forward_kernels(64, true), AttentionKernels::plain);
        EXPECT_EQ(gpt2().kernels, AttentionKernels::plain);
        EXPECT_EQ(gpt2().scratch_bytes(), 0u);
    }
}

// Checked before any launch: runs without a device too.
TEST(CudaAttention, RejectsBadShapes) {
    float* p = nullptr;
    EXPECT_THROW(attention_forward<float>(p, p, p, 1, 8, 4, 3, 64), agpt::Error);   // 3 ∤ 4
    EXPECT_THROW(attention_forward<float>(p, p, p, 1, 8, 4, 4, 193), agpt::Error);  // hd > 192
    EXPECT_THROW(attention_backward<float>(p, p, p, p, p, 1, 8, 4, 4, 193), agpt::Error);
}

}  // namespace
}  // namespace agpt::cuda::test
