#pragma once
// The device bytes of the GPU models (model/gpu/*_gpu.h), as pure arithmetic: the layouts of
// their activation arenas and backward temporaries, which the models' constructors and passes use
// themselves, and the byte counts of every buffer they allocate. Compiled in every build (no
// CUDA needed), so `agpt plan` (tools/plan.h) sizes a cuda job on any machine and cannot drift
// from what the models allocate; tests/cuda/gpu_memory_test.cpp checks the counts against the
// models' state_bytes() and activation_bytes().
//
// Intended use:
//   const GpuModelBytes b = transformer_gpu_bytes(args, B, T, GpuPrecision::bf16,
//                                                 ActivationCheckpoint::none);
//   b.state() + b.activations;   // == TransformerGpu(args, B, T, bf16): state + activation bytes
#include <cstddef>

#include "model/gpt2.h"
#include "model/language_model.h"
#include "model/mla.h"
#include "model/model_args.h"
#include "model/moe.h"
#include "model/tensor_parallel.h"

namespace agpt {

enum class GpuPrecision { bf16, fp32 };

namespace gpu_detail {

constexpr std::size_t align256(std::size_t bytes) {
    return (bytes + 255) / 256 * 256;
}

// Backward temporaries of a pre-norm block (byte offsets for N rows of es-byte elements): the
// residual gradient, a norm output's gradient (D wide), then the FFN's (d activation output,
// ffn_act wide; d first projection output, ffn_pre wide) and the attention's (d attention
// output, attn wide; d qkv, qkv wide; d(q|k before a QK-norm), qk wide) sharing one region
// (never live together).
struct BlockGradLayout {
    std::size_t dres, dnorm, dffn_act, dffn_pre, dattn, dqkv, dqk, size;
};
BlockGradLayout block_grad_layout(std::size_t N, std::size_t es, std::size_t D, std::size_t ffn_act,
                                  std::size_t ffn_pre, std::size_t attn, std::size_t qkv,
                                  std::size_t qk);

// Tokens per chunk of the fused LM head over N tokens and a vocabulary of V: about 512 MiB of
// logits at a time (128M fp32, or 256M with bf16_logits: the bf16 head's), so the head GEMMs
// have thousands of rows and the fp32 weight gradient, read and written once per chunk, is
// revisited as few times as that allows; the chunks even (a multiple of 64 rows, not a short
// last one).
int lm_head_chunk(std::size_t N, int V, bool bf16_logits = false);

// ---- the agpt transformer (TransformerGpu) ----

// Byte offsets of one layer's saved activations for N rows with elements of es bytes; the
// statistics (rstd, lse) are fp32. As the CPU arena: the block input (none under full
// activation checkpointing: the inputs live apart), both norm outputs and their rstd, the
// post-RoPE qkv, q|k before the QK-norm and its rstd (with qk_norm), the attention output and
// lse, the mid-block residual, the w1|w3 (ReLU²: w1) output and the FFN activation.
struct ActLayout {
    std::size_t x, anorm, arstd, qkv, qk_raw, qk_rstd, attn, lse, h, fnorm, frstd, h13, gate, size;
};

// One tensor-parallel rank's widths (tp_degree ranks; 1 without tensor parallelism): its heads,
// KV heads and FFN rows, as the CPU Transformer's.
struct Widths {
    int heads, kv_heads, ffn;
};
Widths widths(const ModelArgs& a, int tp_degree);
// The FFN's first projection width (w1|w3, or w1 alone for ReLU²).
std::size_t ffn_in(const ModelArgs& a, const Widths& w);
// Heads whose q or k goes through the QK-norm (0 without it, and with MLA).
std::size_t qk_heads(const ModelArgs& a, const Widths& w);
// The grouped-query attention's widths: qkv rows, attention output rows (0 with MLA, which
// keeps its own activations in MlaGpu).
std::size_t gqa_qkv(const ModelArgs& a, const Widths& w);
std::size_t gqa_out(const ModelArgs& a, const Widths& w);
ActLayout act_layout(const ModelArgs& a, const Widths& w, std::size_t N, std::size_t es,
                     bool with_input);

// Where the arena keeps what (byte offsets). Mode none: each layer's saved activations (its
// input first), then the residual stream after the last layer. Mode full (activation
// checkpointing): every layer's input and the stream after the last, then ONE layer's working
// set, rewritten by each layer's forward and by its recomputation before its backward. Both end
// with the final norm's output and rstd.
struct ArenaMap {
    ActLayout l;
    std::size_t nd;  // one (N, D) tensor
    std::size_t rows_f32;
    int n_layers;
    bool full;
    std::size_t input(int layer) const {
        return full ? nd * layer : l.size * layer;  // l.x = 0: the input starts a layer's block
    }
    std::size_t saved(int layer) const { return full ? nd * (n_layers + 1) : l.size * layer; }
    std::size_t final_norm() const {
        return full ? nd * (n_layers + 1) + l.size : l.size * n_layers + nd;
    }
    std::size_t final_rstd() const { return final_norm() + nd; }
    std::size_t size() const { return final_rstd() + rows_f32; }
};

ArenaMap arena_map(const ModelArgs& a, const Widths& w, std::size_t N, std::size_t es,
                   ActivationCheckpoint ac);

// Backward temporaries: the FFN's are d_gate and d_h13, the attention's d_attn, d_qkv and, with
// QK-norm, d(q|k before the norm).
BlockGradLayout grad_layout(const ModelArgs& a, const Widths& w, std::size_t N, std::size_t es);

// ---- GPT-2 (Gpt2Gpu) ----

// Byte offsets of one layer's saved activations for N rows with elements of es bytes; the
// statistics (mean, rstd, lse) are fp32. As the CPU arena: the layer input, ln_1's output,
// mean and rstd, qkv (with its bias), the attention output and lse, the residual after
// attention, ln_2's output, mean and rstd, c_fc's output (with its bias) and the GELU's.
struct Gpt2ActLayout {
    std::size_t x, ln1, ln1_mean, ln1_rstd, qkv, atty, lse, h, ln2, ln2_mean, ln2_rstd, fch,
        fch_gelu, size;
};
Gpt2ActLayout gpt2_act_layout(const Gpt2Args& a, std::size_t N, std::size_t es);

// After the layers: the residual stream after the last layer, ln_f's output, mean and rstd.
struct Gpt2FinalLayout {
    std::size_t x, lnf, mean, rstd, size;
};
Gpt2FinalLayout gpt2_final_layout(const Gpt2Args& a, std::size_t N, std::size_t es);

// Backward temporaries: the MLP's are d gelu output and d c_fc output, the attention's d
// attention output and d qkv.
BlockGradLayout gpt2_grad_layout(const Gpt2Args& a, std::size_t N, std::size_t es);

}  // namespace gpu_detail

// ---- byte counts ----

// What a GPU model holds: the fp32 parameters and gradients, the bf16 copy of the parameters
// (bf16 mode), and everything activation_bytes() counts (saved activations, backward
// temporaries, MLA/MoE buffers, the head's scratch, losses and batch).
struct GpuModelBytes {
    std::size_t params = 0, grads = 0, bf16_params = 0;
    std::size_t arena = 0;     // saved activations
    std::size_t backward = 0;  // backward temporaries
    std::size_t layers = 0;    // MLA and MoE layers' own buffers
    std::size_t head = 0;      // LM-head chunk (or grad-norm partials, the larger)
    std::size_t batch = 0;     // tokens, targets, losses (and per-token weights)
    std::size_t tp_stage = 0;  // fp32 staging of bf16 sums over the tensor-parallel group
    std::size_t rope = 0;      // RoPE tables (not in activation_bytes())
    std::size_t state() const { return params + grads + bf16_params; }
    std::size_t activations() const { return arena + backward + layers + head + batch + tp_stage; }
};

// GpuModelBase's share: the flat buffers for n_params, the head scratch over vocab_size rows
// and the batch of max_tokens.
GpuModelBytes gpu_model_base_bytes(std::size_t n_params, int vocab_size, std::size_t max_tokens,
                                   GpuPrecision precision);
// MlaGpu::bytes() and MoeFfnGpu::bytes() (no expert parallelism: its exchange buffers grow
// with the rows received).
std::size_t mla_gpu_bytes(const MlaShape& s, int max_batch, int max_seq, GpuPrecision precision);
std::size_t moe_gpu_bytes(const MoeShape& s, int max_tokens, GpuPrecision precision);
// TransformerGpu(args, max_batch, max_seq, precision, checkpoint), with set_expert_parallel
// over ep_ranks ranks when above 1 (its routed experts shrink to E/ep_ranks per layer), and
// set_tensor_parallel(tp) when tp.degree is above 1 (tp.rank's shard, widths and vocabulary
// rows; tp.group is not used).
GpuModelBytes transformer_gpu_bytes(const ModelArgs& args, int max_batch, int max_seq,
                                    GpuPrecision precision, ActivationCheckpoint checkpoint,
                                    int ep_ranks = 1, const TensorParallel& tp = {});
// Gpt2Gpu(args, max_batch, max_seq, precision).
GpuModelBytes gpt2_gpu_bytes(const Gpt2Args& args, int max_batch, int max_seq,
                             GpuPrecision precision);

}  // namespace agpt
