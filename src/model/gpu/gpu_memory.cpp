// The GPU models' layouts and byte counts (gpu_memory.h). Compiled in every build.
#include "model/gpu/gpu_memory.h"

#include <algorithm>

#include "model/transformer.h"

namespace agpt {

namespace gpu_detail {

namespace {

// Consecutive 256-byte-aligned regions of an arena: take(bytes) returns the next one's offset.
struct ArenaCursor {
    std::size_t end = 0;
    std::size_t operator()(std::size_t bytes) {
        const std::size_t at = end;
        end += align256(bytes);
        return at;
    }
};

}  // namespace

BlockGradLayout block_grad_layout(std::size_t N, std::size_t es, std::size_t D, std::size_t ffn_act,
                                  std::size_t ffn_pre, std::size_t attn, std::size_t qkv,
                                  std::size_t qk) {
    BlockGradLayout g{};
    g.dres = 0;
    g.dnorm = align256(N * D * es);
    const std::size_t shared = g.dnorm + align256(N * D * es);
    g.dffn_act = shared;
    g.dffn_pre = shared + align256(N * ffn_act * es);
    g.dattn = shared;
    g.dqkv = shared + align256(N * attn * es);
    g.dqk = g.dqkv + align256(N * qkv * es);
    g.size = std::max(g.dffn_pre + align256(N * ffn_pre * es), g.dqk + align256(N * qk * es));
    return g;
}

int lm_head_chunk(std::size_t N, int V, bool bf16_logits) {
    const long most = std::max((bf16_logits ? 1L << 28 : 1L << 27) / std::max(V, 1), 16L);
    const long n = std::max(static_cast<long>(N), 16L);
    const long chunks = (n + most - 1) / most;
    const long even = (n + chunks - 1) / chunks;
    return static_cast<int>(std::min((even + 63) / 64 * 64, n));
}

Widths widths(const ModelArgs& a, int tp_degree) {
    return {a.n_heads / tp_degree, a.n_kv_heads / tp_degree, a.ffn_hidden() / tp_degree};
}

std::size_t ffn_in(const ModelArgs& a, const Widths& w) {
    return a.ffn == FfnType::swiglu ? 2 * static_cast<std::size_t>(w.ffn)
                                    : static_cast<std::size_t>(w.ffn);
}

std::size_t qk_heads(const ModelArgs& a, const Widths& w) {
    return a.qk_norm && !a.mla ? static_cast<std::size_t>(w.heads + w.kv_heads) : 0;
}

std::size_t gqa_qkv(const ModelArgs& a, const Widths& w) {
    return a.mla ? 0 : static_cast<std::size_t>(w.heads + 2 * w.kv_heads) * a.head_dim();
}

std::size_t gqa_out(const ModelArgs& a, const Widths& w) {
    return a.mla ? 0 : static_cast<std::size_t>(w.heads) * a.head_dim();
}

ActLayout act_layout(const ModelArgs& a, const Widths& w, std::size_t N, std::size_t es,
                     bool with_input) {
    const std::size_t D = a.dim, F = w.ffn, Q = gqa_qkv(a, w), A = gqa_out(a, w);
    ActLayout l{};
    ArenaCursor take;
    l.x = take(with_input ? N * D * es : 0);
    l.anorm = take(N * D * es);
    l.arstd = take(N * 4);
    l.qkv = take(N * Q * es);
    l.qk_raw = take(N * qk_heads(a, w) * a.head_dim() * es);
    l.qk_rstd = take(N * qk_heads(a, w) * 4);
    l.attn = take(N * A * es);
    l.lse = take(N * (A > 0 ? w.heads : 0) * 4);
    l.h = take(N * D * es);
    l.fnorm = take(N * D * es);
    l.frstd = take(N * 4);
    l.h13 = take(N * ffn_in(a, w) * es);
    l.gate = take(N * F * es);
    l.size = take.end;
    return l;
}

ArenaMap arena_map(const ModelArgs& a, const Widths& w, std::size_t N, std::size_t es,
                   ActivationCheckpoint ac) {
    ArenaMap m{};
    m.full = ac == ActivationCheckpoint::full;
    m.l = act_layout(a, w, N, es, !m.full);
    m.nd = align256(N * a.dim * es);
    m.rows_f32 = align256(N * 4);
    m.n_layers = a.n_layers;
    return m;
}

BlockGradLayout grad_layout(const ModelArgs& a, const Widths& w, std::size_t N, std::size_t es) {
    return block_grad_layout(N, es, a.dim, w.ffn, ffn_in(a, w), gqa_out(a, w), gqa_qkv(a, w),
                             qk_heads(a, w) * a.head_dim());
}

Gpt2ActLayout gpt2_act_layout(const Gpt2Args& a, std::size_t N, std::size_t es) {
    const std::size_t C = a.dim, F = a.ffn_hidden();
    Gpt2ActLayout l{};
    ArenaCursor take;
    l.x = take(N * C * es);
    l.ln1 = take(N * C * es);
    l.ln1_mean = take(N * 4);
    l.ln1_rstd = take(N * 4);
    l.qkv = take(N * 3 * C * es);
    l.atty = take(N * C * es);
    l.lse = take(N * a.n_heads * 4);
    l.h = take(N * C * es);
    l.ln2 = take(N * C * es);
    l.ln2_mean = take(N * 4);
    l.ln2_rstd = take(N * 4);
    l.fch = take(N * F * es);
    l.fch_gelu = take(N * F * es);
    l.size = take.end;
    return l;
}

Gpt2FinalLayout gpt2_final_layout(const Gpt2Args& a, std::size_t N, std::size_t es) {
    Gpt2FinalLayout f{};
    ArenaCursor take;
    f.x = take(N * a.dim * es);
    f.lnf = take(N * a.dim * es);
    f.mean = take(N * 4);
    f.rstd = take(N * 4);
    f.size = take.end;
    return f;
}

BlockGradLayout gpt2_grad_layout(const Gpt2Args& a, std::size_t N, std::size_t es) {
    const std::size_t C = a.dim, F = a.ffn_hidden();
    // No buffer for d(GELU output): the GELU's gradient is the GEMM's epilogue (or is applied
    // in place after it).
    return block_grad_layout(N, es, C, 0, F, C, 3 * C, 0);
}

}  // namespace gpu_detail

using namespace gpu_detail;

namespace {

std::size_t element_bytes(GpuPrecision p) {
    return p == GpuPrecision::bf16 ? 2 : 4;
}

// cuda::grad_norm_scratch_bytes: one double per 4096 gradients.
std::size_t grad_norm_partials_bytes(std::size_t n_params) {
    return std::max<std::size_t>((n_params + 4095) / 4096, 1) * 8;
}

std::size_t numel(const std::vector<ParamView>& views) {
    return views.empty() ? 0 : views.back().offset + views.back().numel();
}

}  // namespace

GpuModelBytes gpu_model_base_bytes(std::size_t n_params, int vocab_size, std::size_t max_tokens,
                                   GpuPrecision precision) {
    GpuModelBytes b;
    b.params = b.grads = n_params * sizeof(float);
    if (precision == GpuPrecision::bf16) b.bf16_params = n_params * 2;
    // The head's chunk of logits: bf16 in bf16 mode, rows padded to 64 elements
    // (lm_head_bf16_logits_scratch_bytes), fp32 otherwise (lm_head_scratch_bytes<float>); the
    // same buffer holds the grad-norm partials.
    const std::size_t chunk = static_cast<std::size_t>(
        lm_head_chunk(max_tokens, vocab_size, precision == GpuPrecision::bf16));
    const std::size_t V = static_cast<std::size_t>(vocab_size);
    const std::size_t row = precision == GpuPrecision::bf16 ? (V + 63) / 64 * 64 : V;
    const std::size_t head = chunk * row * element_bytes(precision);
    b.head = std::max(head, grad_norm_partials_bytes(n_params));
    b.batch = max_tokens * (sizeof(float) + 2 * sizeof(int32_t));  // losses, tokens, targets
    return b;
}

std::size_t mla_gpu_bytes(const MlaShape& s, int max_batch, int max_seq, GpuPrecision precision) {
    const std::size_t es = element_bytes(precision);
    const std::size_t N = static_cast<std::size_t>(max_batch) * max_seq, H = s.n_heads,
                      P = s.qk_head_dim(), R = s.qk_rope_head_dim, KVR = s.kv_lora_rank,
                      QR = s.q_lora_rank, KVB = H * (s.qk_nope_head_dim + s.v_head_dim),
                      HP = std::max(s.qk_head_dim(), s.v_head_dim), V = s.v_head_dim;
    // RoPE tables, q/kv rstd and the lse in fp32.
    const std::size_t f32 =
        2 * static_cast<std::size_t>(max_seq) * (R / 2) + (QR > 0 ? N : 0) + N + N * H;
    // Saved: qa, qan, ckv, kvn, kpe, kv, q, qkv, att, o; backward: the same shapes.
    const std::size_t saved =
        N * (2 * QR + 2 * KVR + R + KVB + H * P + 3 * H * HP + H * HP + H * V);
    return f32 * sizeof(float) + 2 * saved * es;
}

std::size_t moe_gpu_bytes(const MoeShape& s, int max_tokens, GpuPrecision precision) {
    const std::size_t es = element_bytes(precision);
    const std::size_t N = max_tokens, E = s.n_experts, M = N * s.top_k, D = s.dim, F = s.hidden,
                      FS = s.shared_hidden();
    const bool aux = s.aux_loss_alpha > 0;
    // Router logits, scores, their gradient (and the balance loss's scores), gates and their
    // gradient, the per-sequence balance loss, in fp32; the per-expert loads in fp64; the routing
    // as ints; the rows in T.
    const std::size_t f32 = N * E * (3 + (aux ? 1 : 0)) + 2 * M + (aux ? N : 0);
    const std::size_t ints = 3 * M + E + 1;
    const std::size_t rows = (precision == GpuPrecision::bf16 ? N * E : 0) + M * D + M * 2 * F +
                             M * F + M * D + N * 2 * FS + N * FS + std::max(M * D, N * FS) +
                             std::max(M * 2 * F, N * 2 * FS) + M * F;
    return f32 * sizeof(float) + E * sizeof(double) + ints * sizeof(int) + rows * es;
}

GpuModelBytes transformer_gpu_bytes(const ModelArgs& args, int max_batch, int max_seq,
                                    GpuPrecision precision, ActivationCheckpoint checkpoint,
                                    int ep_ranks, const TensorParallel& tp) {
    const std::size_t N = static_cast<std::size_t>(max_batch) * max_seq;
    const std::size_t n_params = numel(transformer_layout(args, tp, ep_ranks).views);
    GpuModelBytes b = gpu_model_base_bytes(n_params, args.vocab_size, N, precision);
    const std::size_t es = element_bytes(precision);
    if (tp.active()) {
        // The vocabulary-parallel head's scratch (cuda::vocab_parallel_scratch_bytes) for the
        // rank's rows, in chunks sized from the whole vocabulary; the grad-norm partials for the
        // rank's shard. Per chunk: the fp32 logits (and their bf16 copy), then three fp32
        // values per row (max, sum of exponentials, target logit).
        const std::size_t chunk = static_cast<std::size_t>(lm_head_chunk(N, args.vocab_size));
        const std::size_t logits =
            chunk *
            static_cast<std::size_t>(vocab_range(args.vocab_size, tp.rank, tp.degree).second);
        const std::size_t head =
            (precision == GpuPrecision::bf16 ? align256(align256(logits * 4) + logits * 2)
                                             : align256(logits * 4)) +
            3 * chunk * sizeof(float);
        b.head = std::max(head, grad_norm_partials_bytes(n_params));
        if (precision == GpuPrecision::bf16) b.tp_stage = N * args.dim * sizeof(float);
    }
    // The grad-norm partials are sized for the model before expert parallelism shrinks it.
    if (ep_ranks > 1)
        b.head = gpu_model_base_bytes(numel(transformer_layout(args).views), args.vocab_size, N,
                                      precision)
                     .head;
    const bool full = checkpoint == ActivationCheckpoint::full;
    const Widths w = widths(args, tp.degree);
    b.arena = arena_map(args, w, N, es, checkpoint).size();
    b.backward = grad_layout(args, w, N, es).size;
    b.batch += N * sizeof(float);  // forward_backward_weighted's per-token weights
    if (args.mla)
        b.layers += (full ? 1 : args.n_layers) *
                    mla_gpu_bytes(mla_shape_of(args), max_batch, max_seq, precision);
    if (args.is_moe()) {
        // Under full checkpointing the MoE layers share one set of buffers (counted once).
        std::size_t moe = moe_gpu_bytes(moe_shape_of(args), static_cast<int>(N), precision);
        if (ep_ranks > 1) moe += 2 * static_cast<std::size_t>(args.n_experts) * sizeof(int);
        b.layers += (full ? 1 : args.n_moe_layers()) * moe;
    }
    b.rope = 2 * static_cast<std::size_t>(max_seq) * (args.head_dim() / 2) * sizeof(float);
    return b;
}

GpuModelBytes gpt2_gpu_bytes(const Gpt2Args& args, int max_batch, int max_seq,
                             GpuPrecision precision) {
    const std::size_t N = static_cast<std::size_t>(max_batch) * max_seq;
    GpuModelBytes b =
        gpu_model_base_bytes(numel(gpt2_param_views(args)), args.vocab_size, N, precision);
    const std::size_t es = element_bytes(precision);
    b.arena =
        gpt2_act_layout(args, N, es).size * args.n_layers + gpt2_final_layout(args, N, es).size;
    b.backward = gpt2_grad_layout(args, N, es).size;
    return b;
}

}  // namespace agpt
