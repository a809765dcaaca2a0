#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <utility>

#include "core/error.h"
#include "core/rng.h"
#include "dist/communicator.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/relu2.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/softcap.h"
#include "kernels/cpu/swiglu.h"
#include "model/hf_llama.h"

namespace agpt {

using namespace agpt::cpu;

std::size_t ParamView::numel() const {
    std::size_t n = 1;
    for (int s : shape) n *= static_cast<std::size_t>(s);
    return n;
}

std::string Transformer::checkpoint_name(const std::string& view_name) const {
    return hf_llama_name(view_name);
}

// Offsets (in floats) of one layer's saved activations, for N = max_batch·max_seq rows.
// qk_raw/qk_rstd (QK-norm only, else empty): q and k before their norm, (N, (H+KV)·hd), and the
// norms' rstd, q heads (N,H) then k heads (N,KV). h13: the first FFN projection, (N, 2F) for
// SwiGLU (w1|w3), (N, F) for ReLU².
struct LayerActs {
    std::size_t x, anorm, arstd, qkv, qk_raw, qk_rstd, attn, lse, h, fnorm, frstd, h13, gate;
    std::size_t size;
};

namespace {

// with_input false: the layer's input lives elsewhere (activation checkpointing), x is empty.
LayerActs layer_layout(const ModelArgs& a, const Transformer::Widths& w, std::size_t N,
                       bool with_input) {
    const std::size_t D = a.dim, F = w.ffn, Q = w.qkv,
                      A = static_cast<std::size_t>(w.heads) * a.head_dim();
    const std::size_t qk_heads =
        a.qk_norm && !a.mla ? static_cast<std::size_t>(w.heads + w.kv_heads) : 0;
    const std::size_t gqa = a.mla ? 0 : 1;  // MLA keeps its own activations (model/mla.h)
    LayerActs l{};
    std::size_t o = 0;
    auto take = [&](std::size_t n) {
        const std::size_t at = o;
        o += n;
        return at;
    };
    l.x = take(with_input ? N * D : 0);
    l.anorm = take(N * D);
    l.arstd = take(N);
    l.qkv = take(gqa * N * Q);
    l.qk_raw = take(N * qk_heads * a.head_dim());
    l.qk_rstd = take(N * qk_heads);
    l.attn = take(gqa * N * A);
    l.lse = take(gqa * N * w.heads);
    l.h = take(N * D);
    l.fnorm = take(N * D);
    l.frstd = take(N);
    l.h13 = take(N * w.ffn_in);
    l.gate = take(N * F);
    l.size = o;
    return l;
}

// Tokens per chunk of the fused head: about 16M logits (64 MiB) at a time. Below ~512 rows the
// head's GEMMs lose 10-20% of their throughput on a 32k vocabulary (measured).
int head_chunk(int N, int V) {
    return std::clamp((1 << 24) / std::max(V, 1), 16, std::max(N, 16));
}

}  // namespace

MlaShape mla_shape_of(const ModelArgs& a) {
    MlaShape s;
    s.dim = a.dim;
    s.n_heads = a.n_heads;
    s.q_lora_rank = a.q_lora_rank;
    s.kv_lora_rank = a.kv_lora_rank;
    s.qk_nope_head_dim = a.qk_nope_head_dim;
    s.qk_rope_head_dim = a.qk_rope_head_dim;
    s.v_head_dim = a.v_head_dim;
    s.norm_eps = a.norm_eps;
    s.rope_theta = a.rope_theta;
    s.max_seq_len = a.max_seq_len;
    s.original_seq_len = a.original_seq_len;
    s.rope_factor = a.rope_factor;
    s.beta_fast = a.beta_fast;
    s.beta_slow = a.beta_slow;
    s.mscale = a.mscale;
    return s;
}

MoeShape moe_shape_of(const ModelArgs& a) {
    return {a.dim,        a.n_experts, a.n_shared_experts, a.top_k,
            a.moe_hidden, a.router,    a.aux_loss_alpha};
}

Transformer::Transformer(const ModelArgs& args, int max_batch, int max_seq,
                         ActivationCheckpoint checkpoint, TensorParallel tp)
    : args_(args), max_batch_(max_batch), max_seq_(max_seq), checkpoint_(checkpoint), tp_(tp) {
    if (!args.mla && args.dim % args.n_heads != 0)
        fail("model: dim {} is not divisible by n_heads {}", args.dim, args.n_heads);
    if (!args.mla && args.n_heads % args.n_kv_heads != 0)
        fail("model: n_heads {} is not divisible by n_kv_heads {}", args.n_heads, args.n_kv_heads);
    if (!args.mla && args.head_dim() % 2 != 0)
        fail("model: head_dim {} must be even for RoPE", args.head_dim());
    for (const auto& [what, cap] : {std::pair{"attn_softcap", args.attn_softcap},
                                    std::pair{"final_softcap", args.final_softcap}})
        if (!(cap >= 0.0) || !std::isfinite(cap))
            fail("model: {} {} must be 0 (off) or a positive cap", what, cap);
    const int n = tp.degree;
    if (tp.active()) {
        if (args.mla || args.is_moe())
            fail("model: tensor parallelism covers the dense agpt flavors only, not MLA/MoE");
        if (args.n_heads % n != 0 || args.n_kv_heads % n != 0 || args.ffn_hidden() % n != 0)
            fail(
                "model: {} heads, {} KV heads and FFN width {} must all be divisible by the "
                "tensor-parallel degree {}",
                args.n_heads, args.n_kv_heads, args.ffn_hidden(), n);
        if (args.vocab_size < n)
            fail("model: vocabulary {} is smaller than the tensor-parallel degree {}",
                 args.vocab_size, n);
        if (tp.group == nullptr || tp.group->size() != n || tp.group->rank() != tp.rank)
            fail("model: the tensor-parallel group does not match rank {} of {}", tp.rank, n);
    }
    w_.heads = args.n_heads / n;
    w_.kv_heads = args.n_kv_heads / n;
    w_.ffn = args.ffn_hidden() / n;
    w_.ffn_in = args.ffn_in_dim() / n;
    w_.qkv = args.qkv_dim() / n;
    std::tie(w_.vocab_first, w_.vocab_rows) = vocab_range(args.vocab_size, tp.rank, n);
    build_views();
    params_.assign(views_.back().offset + views_.back().numel(), 0.0f);
    grads_.assign(params_.size(), 0.0f);

    const std::size_t N = static_cast<std::size_t>(max_batch) * max_seq;
    const std::size_t D = args.dim, F = w_.ffn, Q = w_.qkv,
                      A = args.mla ? 0 : static_cast<std::size_t>(w_.heads) * args.head_dim(),
                      QK = args.qk_norm && !args.mla
                               ? static_cast<std::size_t>(w_.heads + w_.kv_heads) * args.head_dim()
                               : 0;
    const bool full = checkpoint == ActivationCheckpoint::full;
    const LayerActs l = layer_layout(args, w_, N, !full);
    // none: the layers, then the residual stream after the last layer, the final norm and its
    // rstd. full: every layer's input and the stream after the last layer, one layer's working
    // set, the final norm and its rstd.
    acts_.assign(full ? (args.n_layers + 1) * N * D + l.size + N * D + N
                      : l.size * args.n_layers + 2 * N * D + N,
                 0.0f);
    // Backward: residual gradient, then per-layer temporaries reused by every layer.
    dacts_.assign(N * D + N * D + N * F + w_.ffn_in * N + N * A + (args.mla ? 0 : N * Q) + N * QK,
                  0.0f);
    scratch_.assign(
        lm_head_scratch_size(head_chunk(static_cast<int>(N), args.vocab_size), w_.vocab_rows),
        0.0f);
    if (tp.active()) qk_norm_grads_.assign(2 * static_cast<std::size_t>(args.head_dim()), 0.0f);
    const int half = args.head_dim() / 2;
    rope_cos_.resize(static_cast<std::size_t>(max_seq) * half);
    rope_sin_.resize(static_cast<std::size_t>(max_seq) * half);
    rope_tables<float>(rope_cos_.data(), rope_sin_.data(), max_seq, args.head_dim(),
                       args.rope_theta);
    std::shared_ptr<MoeFfn<float>::Buffers> moe_buffers;
    for (int layer = 0; layer < args.n_layers; layer++) {
        if (args.mla && (!full || layer == 0))
            mla_.push_back(std::make_unique<Mla<float>>(mla_shape_of(args), max_batch, max_seq));
        if (!args.is_moe_layer(layer)) {
            moe_.push_back(nullptr);
            continue;
        }
        moe_.push_back(
            std::make_unique<MoeFfn<float>>(moe_shape_of(args), max_batch * max_seq, moe_buffers));
        if (full) moe_buffers = moe_.back()->buffers();
    }
}

MlaWeights<float> Transformer::mla_weights(int layer) {
    const std::string p = "layers." + std::to_string(layer) + ".attention.";
    const bool lora = args_.q_lora_rank > 0;
    return {lora ? nullptr : param(p + "wq.weight"),
            lora ? param(p + "wq_a.weight") : nullptr,
            lora ? param(p + "q_norm.weight") : nullptr,
            lora ? param(p + "wq_b.weight") : nullptr,
            param(p + "wkv_a.weight"),
            param(p + "kv_norm.weight"),
            param(p + "wkv_b.weight"),
            param(p + "wo.weight")};
}

MlaGrads<float> Transformer::mla_grads(int layer) {
    const std::string p = "layers." + std::to_string(layer) + ".attention.";
    const bool lora = args_.q_lora_rank > 0;
    return {lora ? nullptr : grad(p + "wq.weight"),
            lora ? grad(p + "wq_a.weight") : nullptr,
            lora ? grad(p + "q_norm.weight") : nullptr,
            lora ? grad(p + "wq_b.weight") : nullptr,
            grad(p + "wkv_a.weight"),
            grad(p + "kv_norm.weight"),
            grad(p + "wkv_b.weight"),
            grad(p + "wo.weight")};
}

MoeWeights<float> Transformer::moe_weights(int layer) {
    const std::string p = "layers." + std::to_string(layer) + ".moe.";
    const bool shared = args_.n_shared_experts > 0;
    return {param(p + "router.gate.weight"),
            param(p + "experts.w1"),
            param(p + "experts.w2"),
            param(p + "experts.w3"),
            shared ? param(p + "shared_experts.w1.weight") : nullptr,
            shared ? param(p + "shared_experts.w2.weight") : nullptr,
            shared ? param(p + "shared_experts.w3.weight") : nullptr,
            param(p + "expert_bias")};
}

MoeGrads<float> Transformer::moe_grads(int layer) {
    const std::string p = "layers." + std::to_string(layer) + ".moe.";
    const bool shared = args_.n_shared_experts > 0;
    return {grad(p + "router.gate.weight"),
            grad(p + "experts.w1"),
            grad(p + "experts.w2"),
            grad(p + "experts.w3"),
            shared ? grad(p + "shared_experts.w1.weight") : nullptr,
            shared ? grad(p + "shared_experts.w2.weight") : nullptr,
            shared ? grad(p + "shared_experts.w3.weight") : nullptr};
}

std::vector<int> Transformer::moe_layer_ids() const {
    std::vector<int> ids;
    for (int layer = 0; layer < args_.n_layers; layer++)
        if (moe_[layer]) ids.push_back(layer);
    return ids;
}

const MoeFfn<float>& Transformer::moe_layer(int layer) const {
    if (layer < 0 || layer >= args_.n_layers || !moe_[layer])
        fail("model: layer {} is not a MoE layer", layer);
    return *moe_[layer];
}

std::vector<std::vector<double>> Transformer::expert_loads() const {
    std::vector<std::vector<double>> loads;
    for (int layer : moe_layer_ids()) loads.push_back(moe_[layer]->tokens_per_expert());
    return loads;
}

double Transformer::moe_aux_loss() const {
    double sum = 0;
    for (const auto& m : moe_)
        if (m) sum += m->aux_loss();
    return sum;
}

void Transformer::update_expert_bias(double coeff) {
    for (int layer : moe_layer_ids()) {
        MoeFfn<float>& moe = *moe_[layer];
        agpt::update_expert_bias(param("layers." + std::to_string(layer) + ".moe.expert_bias"),
                                 moe.tokens_per_expert(), coeff);
        moe.reset_load();
    }
}

void Transformer::set_expert_parallel(Communicator* ep) {
    if (ep != nullptr && !args_.is_moe())
        fail("model: expert parallelism needs a model with routed experts");
    for (auto& m : moe_)
        if (m) m->set_expert_parallel(ep);
    expert_parallel_ = ep != nullptr && ep->size() > 1 ? ep : nullptr;
    build_views();
    params_.assign(views_.back().offset + views_.back().numel(), 0.0f);
    grads_.assign(params_.size(), 0.0f);
}

bool Transformer::is_expert_shard(const ParamView& v) const {
    return expert_parallel_ != nullptr && v.name.find(".moe.experts.") != std::string::npos;
}

void Transformer::sum_expert_loads(Communicator& comm) {
    for (int layer : moe_layer_ids()) moe_[layer]->sum_load(comm);
}

TransformerLayout transformer_layout(const ModelArgs& args, const TensorParallel& tp,
                                     int expert_ranks) {
    TransformerLayout layout;
    const int D = args.dim, hd = args.head_dim(), F = args.ffn_hidden();
    std::size_t off = 0;
    using Split = ShardSpec::Split;
    // shape: the full tensor's; the view gets this rank's part of it.
    auto add = [&](std::string name, std::vector<int> shape, std::string role,
                   Split split = Split::replicated) {
        ShardSpec s;
        s.split = tp.active() ? split : Split::replicated;
        if (s.split == Split::replicated) {
            s.rows = 1;
            for (int d : shape) s.rows *= d;
        } else {
            s.rows = shape[0];
            s.cols = shape[1];
            int& along = s.split == Split::rows ? shape[0] : shape[1];
            std::tie(s.first, s.count) = vocab_range(along, tp.rank, tp.degree);
            along = s.count;
        }
        ParamView v{std::move(name), off, std::move(shape), std::move(role)};
        off += v.numel();
        layout.views.push_back(std::move(v));
        layout.shards.push_back(s);
    };
    add("tok_embeddings.weight", {args.vocab_size, D}, "embedding", Split::rows);
    for (int i = 0; i < args.n_layers; i++) {
        const std::string p = "layers." + std::to_string(i) + ".";
        add(p + "attention_norm.weight", {D}, "norm");
        if (args.mla) {
            const int H = args.n_heads, QR = args.q_lora_rank, KVR = args.kv_lora_rank,
                      P = args.qk_nope_head_dim + args.qk_rope_head_dim;
            if (QR > 0) {
                add(p + "attention.wq_a.weight", {QR, D}, "attention");
                add(p + "attention.q_norm.weight", {QR}, "norm");
                add(p + "attention.wq_b.weight", {H * P, QR}, "attention");
            } else {
                add(p + "attention.wq.weight", {H * P, D}, "attention");
            }
            add(p + "attention.wkv_a.weight", {KVR + args.qk_rope_head_dim, D}, "attention");
            add(p + "attention.kv_norm.weight", {KVR}, "norm");
            add(p + "attention.wkv_b.weight", {H * (args.qk_nope_head_dim + args.v_head_dim), KVR},
                "attention");
            add(p + "attention.wo.weight", {D, H * args.v_head_dim}, "attention");
        } else {
            // wq, wk, wv are adjacent: together they are the fused (H+2·KV)·hd × D projection.
            // Under TP each holds this rank's heads, so the local fused projection is again
            // q | k | v of the local heads.
            add(p + "attention.wq.weight", {args.n_heads * hd, D}, "attention", Split::rows);
            add(p + "attention.wk.weight", {args.n_kv_heads * hd, D}, "attention", Split::rows);
            add(p + "attention.wv.weight", {args.n_kv_heads * hd, D}, "attention", Split::rows);
            add(p + "attention.wo.weight", {D, args.n_heads * hd}, "attention", Split::columns);
        }
        if (args.qk_norm &&
            !args.mla) {  // one weight per head dimension, shared by the heads (as Qwen3)
            add(p + "attention.q_norm.weight", {hd}, "norm");
            add(p + "attention.k_norm.weight", {hd}, "norm");
        }
        add(p + "ffn_norm.weight", {D}, "norm");
        if (args.is_moe_layer(i)) {
            const int E = args.n_experts, FE = args.moe_hidden,
                      FS = args.n_shared_experts * args.moe_hidden, local = E / expert_ranks;
            add(p + "moe.router.gate.weight", {E, D}, "router");
            add(p + "moe.expert_bias", {E}, "expert_bias");
            add(p + "moe.experts.w1", {local, FE, D}, "ffn");
            add(p + "moe.experts.w2", {local, D, FE}, "ffn");
            add(p + "moe.experts.w3", {local, FE, D}, "ffn");
            if (FS > 0) {
                add(p + "moe.shared_experts.w1.weight", {FS, D}, "ffn");
                add(p + "moe.shared_experts.w2.weight", {D, FS}, "ffn");
                add(p + "moe.shared_experts.w3.weight", {FS, D}, "ffn");
            }
            continue;
        }
        // SwiGLU: w1 then w3, the fused 2F × D gate/up projection. ReLU²: w1 alone.
        add(p + "feed_forward.w1.weight", {F, D}, "ffn", Split::rows);
        if (args.ffn == FfnType::swiglu)
            add(p + "feed_forward.w3.weight", {F, D}, "ffn", Split::rows);
        add(p + "feed_forward.w2.weight", {D, F}, "ffn", Split::columns);
    }
    add("norm.weight", {D}, "norm");
    add("output.weight", {args.vocab_size, D}, "head", Split::rows);
    return layout;
}

void Transformer::build_views() {
    TransformerLayout layout =
        transformer_layout(args_, tp_, expert_parallel_ ? expert_parallel_->size() : 1);
    views_ = std::move(layout.views);
    shards_ = std::move(layout.shards);
}

const ParamView& Transformer::view(const std::string& name) const {
    for (const auto& v : views_)
        if (v.name == name) return v;
    fail("model: no parameter named '{}'", name);
}

std::size_t Transformer::activation_bytes() const {
    std::size_t bytes = (acts_.size() + dacts_.size() + scratch_.size()) * sizeof(float);
    for (const auto& m : mla_) bytes += m->bytes();
    for (const auto& m : moe_)
        if (m) {
            bytes += m->bytes();
            if (checkpoint_ == ActivationCheckpoint::full) break;  // one set of shared buffers
        }
    return bytes;
}

void Transformer::init_weights(const std::string& scheme, uint64_t seed) {
    if (scheme != "agpt" && scheme != "torchtitan")
        fail("model.init: unknown scheme '{}' (known: agpt, torchtitan)", scheme);
    const double D = args_.dim;
    const double linear_std = scheme == "agpt" ? std::sqrt(2.0 / (5.0 * D)) : 0.02;
    Rng rng(seed);
    // Under TP and EP every rank draws the full tensor from the same stream and keeps its part,
    // so the weights do not depend on the ranks.
    auto fill = [&](const ParamView& v, float* p, std::size_t n) {
        if (v.role == "norm") {
            std::fill(p, p + n, 1.0f);
            return;
        }
        if (v.role == "expert_bias") {
            std::fill(p, p + n, 0.0f);
            return;
        }
        if (v.role == "embedding") {
            for (std::size_t i = 0; i < n; i++) p[i] = static_cast<float>(rng.normal());
            return;
        }
        if (v.role == "head") {
            const double std = 1.0 / std::sqrt(D);
            for (std::size_t i = 0; i < n; i++)
                p[i] = static_cast<float>(rng.trunc_normal(std, -3 * std, 3 * std));
            return;
        }
        double std = linear_std;
        const bool output_proj = v.name.ends_with("wo.weight") || v.name.ends_with("w2.weight") ||
                                 v.name.ends_with("w3.weight") || v.name.ends_with("experts.w2") ||
                                 v.name.ends_with("experts.w3");
        if (output_proj) {
            const int layer_id = std::stoi(v.name.substr(7));  // "layers.<id>."
            std /= std::sqrt(2.0 * (layer_id + 1));
        }
        // torch.nn.init.trunc_normal_'s default bounds are absolute ±2.
        for (std::size_t i = 0; i < n; i++)
            p[i] = static_cast<float>(rng.trunc_normal(std, -2.0, 2.0));
    };
    std::vector<float> full;
    for (std::size_t i = 0; i < views_.size(); i++) {
        const ShardSpec& s = shards_[i];
        const ParamView& v = views_[i];
        float* p = params_.data() + v.offset;
        if (is_expert_shard(v)) {  // the rank's experts: a contiguous block of the full tensor
            const std::size_t n = v.numel();
            full.resize(n * expert_parallel_->size());
            fill(v, full.data(), full.size());
            std::copy_n(full.data() + expert_parallel_->rank() * n, n, p);
            continue;
        }
        if (s.split == ShardSpec::Split::replicated) {
            fill(v, p, v.numel());
            continue;
        }
        full.resize(s.full_numel());
        fill(v, full.data(), full.size());
        take_shard(s, full.data(), p);
    }
}

void Transformer::sum_over_tp(float* p, std::size_t n) {
    if (tp_.active()) tp_.group->all_reduce(p, n, ReduceOp::Sum);
}

void Transformer::start_residual(float* out, const float* residual, std::size_t n) {
    if (tp_.rank == 0)
        std::memcpy(out, residual, sizeof(float) * n);
    else
        std::fill(out, out + n, 0.0f);
}

void Transformer::zero_grad() {
    std::fill(grads_.begin(), grads_.end(), 0.0f);
}

float* Transformer::layer_input(int layer) {
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    if (checkpoint_ == ActivationCheckpoint::full) return acts_.data() + maxN * args_.dim * layer;
    const LayerActs l = layer_layout(args_, w_, maxN, true);
    return acts_.data() + l.size * layer + (layer == args_.n_layers ? 0 : l.x);
}

float* Transformer::layer_saved(int layer) {
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    if (checkpoint_ == ActivationCheckpoint::full)
        return layer_input(args_.n_layers) + maxN * args_.dim;
    return acts_.data() + layer_layout(args_, w_, maxN, true).size * layer;
}

float* Transformer::final_norm_out() {
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    if (checkpoint_ == ActivationCheckpoint::full)
        return layer_saved(0) + layer_layout(args_, w_, maxN, false).size;
    return layer_input(args_.n_layers) + maxN * args_.dim;
}

void Transformer::forward(const int32_t* tokens, int B, int T) {
    if (B > max_batch_ || T > max_seq_ || B <= 0 || T <= 0)
        fail("model: batch {}×{} exceeds the allocated {}×{}", B, T, max_batch_, max_seq_);
    for (long i = 0; i < static_cast<long>(B) * T; i++)
        if (tokens[i] < 0 || tokens[i] >= args_.vocab_size)
            fail("model: token id {} at position {} is outside the vocabulary [0, {})", tokens[i],
                 i, args_.vocab_size);
    const int N = B * T, D = args_.dim;
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    if (tp_.active()) {
        embedding_forward_rows<float>(layer_input(0), tokens, param("tok_embeddings.weight"), N, D,
                                      w_.vocab_first, w_.vocab_rows);
        sum_over_tp(layer_input(0), static_cast<std::size_t>(N) * D);
    } else {
        embedding_forward<float>(layer_input(0), tokens, param("tok_embeddings.weight"), N, D);
    }
    for (int layer = 0; layer < args_.n_layers; layer++) forward_layer(layer, B, T);
    float* xf_norm = final_norm_out();
    rmsnorm_forward<float>(xf_norm, xf_norm + maxN * D, layer_input(args_.n_layers),
                           param("norm.weight"), N, D, static_cast<float>(args_.norm_eps));
}

void Transformer::forward_layer(int layer, int B, int T, bool recompute) {
    const int N = B * T, D = args_.dim, F = w_.ffn, Q = w_.qkv, H = w_.heads, KV = w_.kv_heads,
              hd = args_.head_dim(), A = H * hd, QK = (H + KV) * hd, FI = w_.ffn_in;
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const LayerActs l = layer_layout(args_, w_, maxN, checkpoint_ == ActivationCheckpoint::none);
    const float eps = static_cast<float>(args_.norm_eps);
    const float* x = layer_input(layer);
    float* a = layer_saved(layer);
    float* x_next = layer_input(layer + 1);
    const std::size_t ND = static_cast<std::size_t>(N) * D;
    const std::string p = "layers." + std::to_string(layer) + ".";
    rmsnorm_forward<float>(a + l.anorm, a + l.arstd, x, param(p + "attention_norm.weight"), N, D,
                           eps);
    if (args_.mla) {
        std::memcpy(a + l.h, x, sizeof(float) * N * D);
        mla_at(layer).forward(a + l.h, a + l.anorm, mla_weights(layer), B, T);
    } else {
        matmul_forward<float>(a + l.qkv, a + l.anorm, param(p + "attention.wq.weight"), N, D, Q);
        if (args_.qk_norm) {
            // Keep q|k before the norm for backward, then normalise each head in place.
            float* raw = a + l.qk_raw;
            for (int n = 0; n < N; n++)
                std::memcpy(raw + static_cast<std::size_t>(n) * QK,
                            a + l.qkv + static_cast<std::size_t>(n) * Q, sizeof(float) * QK);
            rmsnorm_heads_forward<float>(a + l.qkv, Q, a + l.qk_rstd, raw, QK,
                                         param(p + "attention.q_norm.weight"), N, H, hd, eps);
            rmsnorm_heads_forward<float>(a + l.qkv + H * hd, Q, a + l.qk_rstd + maxN * H,
                                         raw + H * hd, QK, param(p + "attention.k_norm.weight"), N,
                                         KV, hd, eps);
        }
        rope_forward<float>(a + l.qkv, rope_cos_.data(), rope_sin_.data(), B, T, H + KV, hd, Q);
        attention_forward<float>(a + l.attn, a + l.lse, a + l.qkv, B, T, H, KV, hd,
                                 static_cast<float>(args_.attn_softcap));
        start_residual(a + l.h, x, ND);
        matmul_forward<float>(a + l.h, a + l.attn, param(p + "attention.wo.weight"), N, A, D, true);
        sum_over_tp(a + l.h, ND);
    }
    rmsnorm_forward<float>(a + l.fnorm, a + l.frstd, a + l.h, param(p + "ffn_norm.weight"), N, D,
                           eps);
    if (moe_[layer]) {
        std::memcpy(x_next, a + l.h, sizeof(float) * N * D);
        moe_[layer]->forward(x_next, a + l.fnorm, moe_weights(layer), N, count_load_, T);
        return;
    }
    matmul_forward<float>(a + l.h13, a + l.fnorm, param(p + "feed_forward.w1.weight"), N, D, FI);
    if (args_.ffn == FfnType::swiglu)
        swiglu_forward<float>(a + l.gate, a + l.h13, N, F);
    else
        relu2_forward<float>(a + l.gate, a + l.h13, N, F);
    if (recompute) return;
    start_residual(x_next, a + l.h, ND);
    matmul_forward<float>(x_next, a + l.gate, param(p + "feed_forward.w2.weight"), N, F, D, true);
    sum_over_tp(x_next, ND);
}

double Transformer::forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) {
    forward(tokens, B, T);
    return head_loss(targets, B, T, 0.0, false);
}

double Transformer::head_loss(const int32_t* targets, int B, int T, double grad_scale,
                              bool backward) {
    const int N = B * T, D = args_.dim, V = args_.vocab_size;
    for (long i = 0; i < N; i++)
        if (targets[i] < -1 || targets[i] >= V)
            fail("model: target id {} at position {} is outside the vocabulary [0, {})", targets[i],
                 i, V);
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const float* xf_norm = final_norm_out();
    float* d_xf = backward ? dacts_.data() + maxN * D : nullptr;
    if (tp_.active())
        return vocab_parallel_cross_entropy(
            d_xf, backward ? grad("output.weight") : nullptr, xf_norm, param("output.weight"),
            targets, N, D, w_.vocab_first, w_.vocab_rows, static_cast<float>(grad_scale),
            scratch_.data(), head_chunk(static_cast<int>(maxN), V),
            static_cast<float>(args_.final_softcap), head_row_scale_, head_row_loss_, tp_);
    if (d_xf) std::fill(d_xf, d_xf + static_cast<std::size_t>(N) * D, 0.0f);
    return lm_head_cross_entropy<float>(
        d_xf, backward ? grad("output.weight") : nullptr, xf_norm, param("output.weight"), targets,
        N, D, V, static_cast<float>(grad_scale), scratch_.data(),
        head_chunk(static_cast<int>(maxN), V), static_cast<float>(args_.final_softcap),
        head_row_scale_, head_row_loss_);
}

double Transformer::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                     double grad_scale) {
    count_load_ = true;  // the balancing rule counts training routes only
    forward(tokens, B, T);
    count_load_ = false;
    const double loss_sum = head_loss(targets, B, T, grad_scale, true);

    const int N = B * T, D = args_.dim;
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    float* dres = dacts_.data();      // gradient of the residual stream, (N,D)
    float* d_norm = dres + maxN * D;  // the head wrote d(final norm output) here
    const float* x_final = layer_input(args_.n_layers);
    std::fill(dres, dres + static_cast<std::size_t>(N) * D, 0.0f);
    rmsnorm_backward<float>(dres, grad("norm.weight"), d_norm, x_final, param("norm.weight"),
                            final_norm_out() + maxN * D, N, D);
    // The buffer holds the embedding, the layers in order, the final norm and the head.
    auto layer_begin = [&](int layer) {
        return layer == args_.n_layers
                   ? view("norm.weight").offset
                   : view("layers." + std::to_string(layer) + ".attention_norm.weight").offset;
    };
    grads_ready(layer_begin(args_.n_layers), grads_.size());
    for (int layer = args_.n_layers - 1; layer >= 0; layer--) {
        if (checkpoint_ == ActivationCheckpoint::full) forward_layer(layer, B, T, true);
        backward_layer(layer, B, T, grad_scale);
        grads_ready(layer_begin(layer), layer_begin(layer + 1));
    }
    if (tp_.active())
        embedding_backward_rows<float>(grad("tok_embeddings.weight"), dres, tokens, N, D,
                                       w_.vocab_first, w_.vocab_rows);
    else
        embedding_backward<float>(grad("tok_embeddings.weight"), dres, tokens, N, D);
    grads_ready(0, layer_begin(0));
    return loss_sum;
}

void Transformer::backward_layer(int layer, int B, int T, double grad_scale) {
    const int N = B * T, D = args_.dim, F = w_.ffn, Q = w_.qkv, H = w_.heads, KV = w_.kv_heads,
              hd = args_.head_dim(), A = H * hd, QK = (H + KV) * hd, FI = w_.ffn_in;
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const LayerActs l = layer_layout(args_, w_, maxN, checkpoint_ == ActivationCheckpoint::none);
    const float* x = layer_input(layer);
    const float* a = layer_saved(layer);
    float* dres = dacts_.data();      // gradient of the residual stream, (N,D)
    float* d_norm = dres + maxN * D;  // gradient of a norm's output, (N,D)
    float* d_gate = d_norm + maxN * D;
    float* d_h13 = d_gate + maxN * F;
    float* d_attn = d_h13 + maxN * FI;
    float* d_qkv = d_attn + maxN * A;
    float* d_qk = d_qkv + maxN * Q;  // QK-norm: gradient of q|k before the norm, (N, QK)
    auto zero = [](float* p, std::size_t n) { std::fill(p, p + n, 0.0f); };
    const std::size_t ND = static_cast<std::size_t>(N) * D;
    const std::string p = "layers." + std::to_string(layer) + ".";
    // FFN: x_next = h + w2(swiglu(w1|w3 · ffn_norm(h)))  or  h + w2(relu2(w1 · ffn_norm(h)))
    if (moe_[layer]) {
        zero(d_norm, ND);
        moe_[layer]->backward(d_norm, moe_grads(layer), dres, a + l.fnorm, moe_weights(layer), N,
                              grad_scale * N);
    } else {
        zero(d_gate, static_cast<std::size_t>(N) * F);
        matmul_backward<float>(d_gate, grad(p + "feed_forward.w2.weight"), dres, a + l.gate,
                               param(p + "feed_forward.w2.weight"), N, F, D);
        zero(d_h13, static_cast<std::size_t>(N) * FI);
        if (args_.ffn == FfnType::swiglu)
            swiglu_backward<float>(d_h13, d_gate, a + l.h13, N, F);
        else
            relu2_backward<float>(d_h13, d_gate, a + l.h13, N, F);
        zero(d_norm, ND);
        matmul_backward<float>(d_norm, grad(p + "feed_forward.w1.weight"), d_h13, a + l.fnorm,
                               param(p + "feed_forward.w1.weight"), N, D, FI);
        // Column-parallel w1|w3 (and wq|wk|wv below) leave each TP rank a partial input
        // gradient: summed over the group before the replicated norm's backward, whose weight
        // gradient is then the same on every rank.
        sum_over_tp(d_norm, ND);
    }
    rmsnorm_backward<float>(dres, grad(p + "ffn_norm.weight"), d_norm, a + l.h,
                            param(p + "ffn_norm.weight"), a + l.frstd, N, D);
    // Attention: h = x + wo · attn(rope(qk_norm(wqkv · attention_norm(x))))
    if (args_.mla) {
        zero(d_norm, ND);
        mla_at(layer).backward(d_norm, mla_grads(layer), dres, a + l.anorm, mla_weights(layer), B,
                               T);
    } else {
        zero(d_attn, static_cast<std::size_t>(N) * A);
        matmul_backward<float>(d_attn, grad(p + "attention.wo.weight"), dres, a + l.attn,
                               param(p + "attention.wo.weight"), N, A, D);
        zero(d_qkv, static_cast<std::size_t>(N) * Q);
        attention_backward<float>(d_qkv, d_attn, a + l.qkv, a + l.attn, a + l.lse, B, T, H, KV, hd,
                                  static_cast<float>(args_.attn_softcap));
        rope_backward<float>(d_qkv, rope_cos_.data(), rope_sin_.data(), B, T, H + KV, hd, Q);
        if (args_.qk_norm) {
            // d_qkv's q|k columns hold d(normalised q|k); replace them with d(raw q|k).
            const float* raw = a + l.qk_raw;
            zero(d_qk, static_cast<std::size_t>(N) * QK);
            // Under TP each rank sees its own heads only: this backward's q/k-norm weight
            // gradients are summed over the group before they are accumulated.
            float* dq_norm = grad(p + "attention.q_norm.weight");
            float* dk_norm = grad(p + "attention.k_norm.weight");
            if (tp_.active()) {
                dq_norm = qk_norm_grads_.data();
                dk_norm = dq_norm + hd;
                zero(dq_norm, 2 * static_cast<std::size_t>(hd));
            }
            rmsnorm_heads_backward<float>(d_qk, QK, dq_norm, d_qkv, Q, raw, QK,
                                          param(p + "attention.q_norm.weight"), a + l.qk_rstd, N, H,
                                          hd);
            rmsnorm_heads_backward<float>(d_qk + H * hd, QK, dk_norm, d_qkv + H * hd, Q,
                                          raw + H * hd, QK, param(p + "attention.k_norm.weight"),
                                          a + l.qk_rstd + maxN * H, N, KV, hd);
            if (tp_.active()) {
                sum_over_tp(dq_norm, 2 * static_cast<std::size_t>(hd));
                float* gq = grad(p + "attention.q_norm.weight");
                float* gk = grad(p + "attention.k_norm.weight");
                for (int i = 0; i < hd; i++) {
                    gq[i] += dq_norm[i];
                    gk[i] += dk_norm[i];
                }
            }
            for (int n = 0; n < N; n++)
                std::memcpy(d_qkv + static_cast<std::size_t>(n) * Q,
                            d_qk + static_cast<std::size_t>(n) * QK, sizeof(float) * QK);
        }
        zero(d_norm, ND);
        matmul_backward<float>(d_norm, grad(p + "attention.wq.weight"), d_qkv, a + l.anorm,
                               param(p + "attention.wq.weight"), N, D, Q);
        sum_over_tp(d_norm, ND);
    }
    rmsnorm_backward<float>(dres, grad(p + "attention_norm.weight"), d_norm, x,
                            param(p + "attention_norm.weight"), a + l.arstd, N, D);
}

void Transformer::forward_logits(const int32_t* tokens, int B, int T, float* out) {
    forward(tokens, B, T);
    head_logits(final_norm_out(), B * T, out);
}

void Transformer::head_logits(const float* x, int N, float* out) {
    const int V = args_.vocab_size, Vl = w_.vocab_rows;
    std::vector<float> shard;  // forward-only (validation, sampling): not part of the arena
    if (tp_.active()) shard.resize(static_cast<std::size_t>(N) * Vl);
    float* local = tp_.active() ? shard.data() : out;
    matmul_forward<float>(local, x, param("output.weight"), N, args_.dim, Vl);
    softcap_forward<float>(local, static_cast<long>(N) * Vl,
                           static_cast<float>(args_.final_softcap));
    if (tp_.active()) gather_vocab_columns(local, out, N, V, tp_);
}

void Transformer::last_logits(const int32_t* tokens, int T, float* out) {
    forward(tokens, 1, T);
    const float* last = final_norm_out() + static_cast<std::size_t>(T - 1) * args_.dim;
    head_logits(last, 1, out);
}

void Transformer::token_logprobs(const int32_t* tokens, const int32_t* targets, int B, int T,
                                 double* logprobs) {
    head_row_loss_ = logprobs;
    try {
        forward_loss(tokens, targets, B, T);
    } catch (...) {
        head_row_loss_ = nullptr;
        throw;
    }
    head_row_loss_ = nullptr;
    for (long i = 0; i < static_cast<long>(B) * T; i++) logprobs[i] = -logprobs[i];
}

double Transformer::forward_backward_weighted(const int32_t* tokens, const int32_t* targets,
                                              const float* weights, int B, int T) {
    head_row_scale_ = weights;
    double loss_sum = 0.0;
    try {
        loss_sum = forward_backward(tokens, targets, B, T, 1.0);
    } catch (...) {
        head_row_scale_ = nullptr;
        throw;
    }
    head_row_scale_ = nullptr;
    return loss_sum;
}

}  // namespace agpt
