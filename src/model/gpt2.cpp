#include "model/gpt2.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/bias.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layernorm.h"

namespace agpt {

using namespace agpt::cpu;

namespace {

// Offsets (in floats) of one layer's saved activations, for N = max_batch·max_seq rows.
struct LayerActs {
    std::size_t x, ln1, ln1_mean, ln1_rstd, qkv, atty, lse, h, ln2, ln2_mean, ln2_rstd, fch,
        fch_gelu;
    std::size_t size;
};

LayerActs layer_layout(const Gpt2Args& a, std::size_t N) {
    const std::size_t C = a.dim, F = a.ffn_hidden();
    LayerActs l{};
    std::size_t o = 0;
    auto take = [&](std::size_t n) {
        const std::size_t at = o;
        o += n;
        return at;
    };
    l.x = take(N * C);  // the layer's input (the residual stream)
    l.ln1 = take(N * C);
    l.ln1_mean = take(N);
    l.ln1_rstd = take(N);
    l.qkv = take(N * 3 * C);
    l.atty = take(N * C);
    l.lse = take(N * a.n_heads);
    l.h = take(N * C);  // residual stream after attention
    l.ln2 = take(N * C);
    l.ln2_mean = take(N);
    l.ln2_rstd = take(N);
    l.fch = take(N * F);
    l.fch_gelu = take(N * F);
    l.size = o;
    return l;
}

// Tokens per chunk of the fused head (as transformer.cpp): about 16M logits at a time.
int head_chunk(int N, int V) {
    return std::clamp((1 << 24) / std::max(V, 1), 16, std::max(N, 16));
}

}  // namespace

Gpt2::Gpt2(const Gpt2Args& args, int max_batch, int max_seq)
    : args_(args), max_batch_(max_batch), max_seq_(max_seq) {
    if (args.dim <= 0 || args.n_layers <= 0 || args.n_heads <= 0 || args.vocab_size <= 0 ||
        args.max_seq_len <= 0)
        fail(
            "gpt2: dim {}, n_layers {}, n_heads {}, vocab_size {} and max_seq_len {} must be "
            "positive",
            args.dim, args.n_layers, args.n_heads, args.vocab_size, args.max_seq_len);
    if (args.dim % args.n_heads != 0)
        fail("gpt2: dim {} is not divisible by n_heads {}", args.dim, args.n_heads);
    if (args.padded_vocab() < args.vocab_size)
        fail("gpt2: padded_vocab_size {} is smaller than vocab_size {}", args.padded_vocab(),
             args.vocab_size);
    if (max_batch <= 0 || max_seq <= 0) fail("gpt2: batch {}×{} is empty", max_batch, max_seq);
    if (max_seq > args.max_seq_len)
        fail("gpt2: sequence length {} exceeds the model's context {} (rows of wpe)", max_seq,
             args.max_seq_len);
    build_views();
    params_.assign(views_.back().offset + views_.back().numel(), 0.0f);
    grads_.assign(params_.size(), 0.0f);

    const std::size_t N = static_cast<std::size_t>(max_batch) * max_seq;
    const std::size_t C = args.dim, F = args.ffn_hidden();
    const LayerActs l = layer_layout(args, N);
    // Layers, then the residual stream after the last layer, ln_f's output, mean and rstd.
    acts_.assign(l.size * args.n_layers + 2 * N * C + 2 * N, 0.0f);
    // Backward: the residual gradient (N,C), a norm-output gradient (N,C), and two (N,F)
    // buffers: d(fch_gelu) and d(fch) in the MLP, reused as d(atty) and d(qkv) in attention.
    dacts_.assign(2 * N * C + 2 * N * F, 0.0f);
    scratch_.assign(
        lm_head_scratch_size(head_chunk(static_cast<int>(N), args.vocab_size), args.vocab_size),
        0.0f);
}

void Gpt2::build_views() {
    views_ = gpt2_param_views(args_);
    auto at = [&](const std::string& name) { return view(name).offset; };
    wte_ = at("wte.weight");
    wpe_ = at("wpe.weight");
    for (int i = 0; i < args_.n_layers; i++) {
        const std::string p = "h." + std::to_string(i) + ".";
        layers_.push_back({at(p + "ln_1.weight"), at(p + "ln_1.bias"), at(p + "attn.c_attn.weight"),
                           at(p + "attn.c_attn.bias"), at(p + "attn.c_proj.weight"),
                           at(p + "attn.c_proj.bias"), at(p + "ln_2.weight"), at(p + "ln_2.bias"),
                           at(p + "mlp.c_fc.weight"), at(p + "mlp.c_fc.bias"),
                           at(p + "mlp.c_proj.weight"), at(p + "mlp.c_proj.bias")});
    }
    lnf_w_ = at("ln_f.weight");
    lnf_b_ = at("ln_f.bias");
}

const ParamView& Gpt2::view(const std::string& name) const {
    for (const auto& v : views_)
        if (v.name == name) return v;
    fail("gpt2: no parameter named '{}'", name);
}

std::size_t Gpt2::activation_bytes() const {
    return (acts_.size() + dacts_.size() + scratch_.size()) * sizeof(float);
}

void Gpt2::init_weights(const std::string& scheme, uint64_t seed) {
    if (scheme != "gpt2") fail("model.init: unknown scheme '{}' for gpt2 (known: gpt2)", scheme);
    const double residual_std = 0.02 / std::sqrt(2.0 * args_.n_layers);
    Rng rng(seed);
    for (const auto& v : views_) {
        float* p = params_.data() + v.offset;
        std::size_t n = v.numel();
        if (v.role == "norm") {
            std::fill(p, p + n, 1.0f);
            continue;
        }
        if (v.role == "bias") {
            std::fill(p, p + n, 0.0f);
            continue;
        }
        double std = 0.02;
        if (v.name.ends_with("c_proj.weight")) std = residual_std;
        if (v.name == "wte.weight") {  // the padding rows stay 0
            std::fill(p, p + n, 0.0f);
            n = static_cast<std::size_t>(args_.vocab_size) * args_.dim;
        }
        for (std::size_t i = 0; i < n; i++) p[i] = static_cast<float>(std * rng.normal());
    }
}

void Gpt2::zero_grad() {
    std::fill(grads_.begin(), grads_.end(), 0.0f);
}

const float* Gpt2::final_norm_output() const {
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const LayerActs l = layer_layout(args_, maxN);
    return acts_.data() + l.size * args_.n_layers + maxN * args_.dim;
}

void Gpt2::forward(const int32_t* tokens, int B, int T) {
    if (B > max_batch_ || T > max_seq_ || B <= 0 || T <= 0)
        fail("gpt2: batch {}×{} exceeds the allocated {}×{}", B, T, max_batch_, max_seq_);
    for (long i = 0; i < static_cast<long>(B) * T; i++)
        if (tokens[i] < 0 || tokens[i] >= args_.vocab_size)
            fail("gpt2: token id {} at position {} is outside the vocabulary [0, {})", tokens[i], i,
                 args_.vocab_size);
    const int N = B * T, C = args_.dim, F = args_.ffn_hidden(), H = args_.n_heads,
              hd = args_.head_dim();
    const float eps = static_cast<float>(args_.norm_eps);
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const std::size_t NC = static_cast<std::size_t>(N) * C;
    const LayerActs l = layer_layout(args_, maxN);
    const float* P = params_.data();
    float* acts = acts_.data();

    // x = wte[tokens] + wpe[0..T): wpe's first T rows are one T·C vector added to each sequence.
    embedding_forward<float>(acts + l.x, tokens, P + wte_, N, C);
    bias_forward<float>(acts + l.x, P + wpe_, B, T * C);
    for (int layer = 0; layer < args_.n_layers; layer++) {
        const LayerParams& w = layers_[layer];
        float* a = acts + l.size * layer;
        float* x_next =
            layer + 1 < args_.n_layers ? a + l.size + l.x : acts + l.size * args_.n_layers;
        // h = x + c_proj(attn(c_attn(ln_1(x))))
        layernorm_forward<float>(a + l.ln1, a + l.ln1_mean, a + l.ln1_rstd, a + l.x, P + w.ln1_w,
                                 P + w.ln1_b, N, C, eps);
        bias_forward<float>(a + l.qkv, P + w.attn_b, N, 3 * C, false);
        matmul_forward<float>(a + l.qkv, a + l.ln1, P + w.attn_w, N, C, 3 * C, true);
        attention_forward<float>(a + l.atty, a + l.lse, a + l.qkv, B, T, H, H, hd);
        std::memcpy(a + l.h, a + l.x, sizeof(float) * NC);
        bias_forward<float>(a + l.h, P + w.proj_b, N, C);
        matmul_forward<float>(a + l.h, a + l.atty, P + w.proj_w, N, C, C, true);
        // x_next = h + mlp.c_proj(gelu(c_fc(ln_2(h))))
        layernorm_forward<float>(a + l.ln2, a + l.ln2_mean, a + l.ln2_rstd, a + l.h, P + w.ln2_w,
                                 P + w.ln2_b, N, C, eps);
        bias_forward<float>(a + l.fch, P + w.fc_b, N, F, false);
        matmul_forward<float>(a + l.fch, a + l.ln2, P + w.fc_w, N, C, F, true);
        gelu_forward<float>(a + l.fch_gelu, a + l.fch, static_cast<long>(N) * F);
        std::memcpy(x_next, a + l.h, sizeof(float) * NC);
        bias_forward<float>(x_next, P + w.fcproj_b, N, C);
        matmul_forward<float>(x_next, a + l.fch_gelu, P + w.fcproj_w, N, F, C, true);
    }
    float* x_final = acts + l.size * args_.n_layers;
    float* lnf = x_final + maxN * C;
    float* lnf_mean = lnf + maxN * C;
    float* lnf_rstd = lnf_mean + maxN;
    layernorm_forward<float>(lnf, lnf_mean, lnf_rstd, x_final, P + lnf_w_, P + lnf_b_, N, C, eps);
}

double Gpt2::head_loss(const int32_t* targets, int B, int T, double grad_scale, bool backward) {
    const int N = B * T, C = args_.dim, V = args_.vocab_size;
    for (long i = 0; i < N; i++)
        if (targets[i] < -1 || targets[i] >= V)
            fail("gpt2: target id {} at position {} is outside the vocabulary [0, {})", targets[i],
                 i, V);
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    float* d_lnf = backward ? dacts_.data() + maxN * C : nullptr;
    if (d_lnf) std::fill(d_lnf, d_lnf + static_cast<std::size_t>(N) * C, 0.0f);
    // The head is wte's first V rows; its gradient adds into wte's together with the lookup's.
    return lm_head_cross_entropy<float>(d_lnf, backward ? grads_.data() + wte_ : nullptr,
                                        final_norm_output(), params_.data() + wte_, targets, N, C,
                                        V, static_cast<float>(grad_scale), scratch_.data(),
                                        head_chunk(static_cast<int>(maxN), V));
}

double Gpt2::forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) {
    forward(tokens, B, T);
    return head_loss(targets, B, T, 0.0, false);
}

double Gpt2::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                              double grad_scale) {
    forward(tokens, B, T);
    const double loss_sum = head_loss(targets, B, T, grad_scale, true);

    const int N = B * T, C = args_.dim, F = args_.ffn_hidden(), H = args_.n_heads,
              hd = args_.head_dim();
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const std::size_t NC = static_cast<std::size_t>(N) * C, NF = static_cast<std::size_t>(N) * F;
    const LayerActs l = layer_layout(args_, maxN);
    const float* P = params_.data();
    float* G = grads_.data();
    float* acts = acts_.data();
    float* dres = dacts_.data();        // gradient of the residual stream, (N,C)
    float* d_norm = dres + maxN * C;    // gradient of a LayerNorm's output, (N,C)
    float* d_big1 = d_norm + maxN * C;  // (N,F): d(fch_gelu), then d(atty)
    float* d_big2 = d_big1 + maxN * F;  // (N,F): d(fch), then d(qkv)
    auto zero = [](float* p, std::size_t n) { std::fill(p, p + n, 0.0f); };

    // The head wrote d(ln_f output) into d_norm.
    float* x_final = acts + l.size * args_.n_layers;
    const float* lnf_mean = x_final + 2 * maxN * C;
    const float* lnf_rstd = lnf_mean + maxN;
    zero(dres, NC);
    layernorm_backward<float>(dres, G + lnf_w_, G + lnf_b_, d_norm, x_final, P + lnf_w_, lnf_mean,
                              lnf_rstd, N, C);
    // The buffer holds wte, wpe, the layers in order and ln_f; wte (tied to the head) is
    // final only after the embedding's backward.
    auto layer_begin = [&](int layer) {
        return layer == args_.n_layers ? lnf_w_ : layers_[layer].ln1_w;
    };
    grads_ready(layer_begin(args_.n_layers), grads_.size());
    for (int layer = args_.n_layers - 1; layer >= 0; layer--) {
        const LayerParams& w = layers_[layer];
        float* a = acts + l.size * layer;
        // MLP: x_next = h + fcproj_b + fcproj_w · gelu(fc_w · ln_2(h) + fc_b)
        float* d_gelu = d_big1;
        float* d_fch = d_big2;
        zero(d_gelu, NF);
        matmul_backward<float>(d_gelu, G + w.fcproj_w, dres, a + l.fch_gelu, P + w.fcproj_w, N, F,
                               C);
        bias_backward<float>(G + w.fcproj_b, dres, N, C);
        zero(d_fch, NF);
        gelu_backward<float>(d_fch, d_gelu, a + l.fch, static_cast<long>(N) * F);
        zero(d_norm, NC);
        matmul_backward<float>(d_norm, G + w.fc_w, d_fch, a + l.ln2, P + w.fc_w, N, C, F);
        bias_backward<float>(G + w.fc_b, d_fch, N, F);
        layernorm_backward<float>(dres, G + w.ln2_w, G + w.ln2_b, d_norm, a + l.h, P + w.ln2_w,
                                  a + l.ln2_mean, a + l.ln2_rstd, N, C);
        // Attention: h = x + proj_b + proj_w · attn(attn_w · ln_1(x) + attn_b)
        float* d_atty = d_big1;
        float* d_qkv = d_big2;
        zero(d_atty, NC);
        matmul_backward<float>(d_atty, G + w.proj_w, dres, a + l.atty, P + w.proj_w, N, C, C);
        bias_backward<float>(G + w.proj_b, dres, N, C);
        zero(d_qkv, 3 * NC);
        attention_backward<float>(d_qkv, d_atty, a + l.qkv, a + l.atty, a + l.lse, B, T, H, H, hd);
        zero(d_norm, NC);
        matmul_backward<float>(d_norm, G + w.attn_w, d_qkv, a + l.ln1, P + w.attn_w, N, C, 3 * C);
        bias_backward<float>(G + w.attn_b, d_qkv, N, 3 * C);
        layernorm_backward<float>(dres, G + w.ln1_w, G + w.ln1_b, d_norm, a + l.x, P + w.ln1_w,
                                  a + l.ln1_mean, a + l.ln1_rstd, N, C);
        grads_ready(layer_begin(layer), layer_begin(layer + 1));
    }
    embedding_backward<float>(G + wte_, dres, tokens, N, C);
    bias_backward<float>(G + wpe_, dres, B, T * C);
    grads_ready(0, layer_begin(0));
    return loss_sum;
}

void Gpt2::forward_logits(const int32_t* tokens, int B, int T, float* out) {
    forward(tokens, B, T);
    matmul_forward<float>(out, final_norm_output(), params_.data() + wte_, B * T, args_.dim,
                          args_.vocab_size);
}

void Gpt2::last_logits(const int32_t* tokens, int T, float* out) {
    forward(tokens, 1, T);
    const float* last = final_norm_output() + static_cast<std::size_t>(T - 1) * args_.dim;
    matmul_forward<float>(out, last, params_.data() + wte_, 1, args_.dim, args_.vocab_size);
}

}  // namespace agpt
