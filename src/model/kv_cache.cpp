#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "kernels/cpu/attention_decode.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/relu2.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/softcap.h"
#include "kernels/cpu/swiglu.h"

namespace agpt {

using namespace agpt::cpu;

namespace {

// A long prompt is prefilled in chunks so that the scratch stays small whatever the capacity;
// 256 rows keep the GEMMs near their full-width throughput.
constexpr int kChunk = 256;

}  // namespace

KvCache::KvCache(Transformer& model, int capacity) : model_(&model), capacity_(capacity) {
    const ModelArgs& a = model.args();
    if (a.mla) fail("kv cache: MLA models decode without a cache for now (use_cache = false)");
    if (capacity <= 0 || capacity > a.max_seq_len)
        fail("kv cache: capacity {} outside [1, max_seq_len {}]", capacity, a.max_seq_len);
    const std::size_t kv = static_cast<std::size_t>(a.n_kv_heads) * a.head_dim();
    k_.assign(static_cast<std::size_t>(a.n_layers) * capacity * kv, 0.0f);
    v_.assign(k_.size(), 0.0f);
    const int half = a.head_dim() / 2;
    rope_cos_.resize(static_cast<std::size_t>(capacity) * half);
    rope_sin_.resize(rope_cos_.size());
    rope_tables<float>(rope_cos_.data(), rope_sin_.data(), capacity, a.head_dim(), a.rope_theta);
    const std::size_t rows = std::min(kChunk, capacity);
    const std::size_t D = a.dim, F = a.ffn_hidden();
    x_.resize(rows * D);
    xn_.resize(rows * D);
    rstd_.resize(rows);
    qkv_.resize(rows * a.qkv_dim());
    if (a.qk_norm) qk_rstd_.resize(rows * (a.n_heads + a.n_kv_heads));
    attn_.resize(rows * a.n_heads * a.head_dim());
    h13_.resize(rows * a.ffn_in_dim());
    gate_.resize(rows * F);
}

void KvCache::append(const int32_t* tokens, int n, float* logits) {
    const ModelArgs& a = model_->args();
    if (n <= 0) fail("kv cache: nothing to append");
    if (length_ + n > capacity_)
        fail("kv cache: {} + {} positions exceed the capacity {}", length_, n, capacity_);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= a.vocab_size)
            fail("kv cache: token id {} is outside the vocabulary [0, {})", tokens[i],
                 a.vocab_size);
    int done = 0;
    while (done < n) {
        const int c = std::min(kChunk, n - done);
        run_chunk(tokens + done, c);
        done += c;
    }
    // The residual rows of the last chunk are still in x_; only its last row needs logits.
    const int last = (n - 1) % kChunk;
    const int D = a.dim;
    float rstd = 0.0f;
    std::vector<float> xn(static_cast<std::size_t>(D));
    rmsnorm_forward<float>(xn.data(), &rstd, x_.data() + static_cast<std::size_t>(last) * D,
                           model_->param("norm.weight"), 1, D, static_cast<float>(a.norm_eps));
    matmul_forward<float>(logits, xn.data(), model_->param("output.weight"), 1, D, a.vocab_size);
    softcap_forward<float>(logits, a.vocab_size, static_cast<float>(a.final_softcap));
}

void KvCache::run_chunk(const int32_t* tokens, int n) {
    const ModelArgs& a = model_->args();
    const int D = a.dim, F = a.ffn_hidden(), Q = a.qkv_dim(), H = a.n_heads, KV = a.n_kv_heads,
              hd = a.head_dim(), A = H * hd, kvw = KV * hd, half = hd / 2;
    const float eps = static_cast<float>(a.norm_eps);
    const int p0 = length_;
    Transformer& m = *model_;
    embedding_forward<float>(x_.data(), tokens, m.param("tok_embeddings.weight"), n, D);
    for (int layer = 0; layer < a.n_layers; layer++) {
        const std::string p = "layers." + std::to_string(layer) + ".";
        float* kc = k_.data() + static_cast<std::size_t>(layer) * capacity_ * kvw;
        float* vc = v_.data() + static_cast<std::size_t>(layer) * capacity_ * kvw;
        rmsnorm_forward<float>(xn_.data(), rstd_.data(), x_.data(),
                               m.param(p + "attention_norm.weight"), n, D, eps);
        matmul_forward<float>(qkv_.data(), xn_.data(), m.param(p + "attention.wq.weight"), n, D, Q);
        if (a.qk_norm) {  // in place: nothing needs q|k before the norm here
            rmsnorm_heads_forward<float>(qkv_.data(), Q, qk_rstd_.data(), qkv_.data(), Q,
                                         m.param(p + "attention.q_norm.weight"), n, H, hd, eps);
            rmsnorm_heads_forward<float>(qkv_.data() + A, Q, qk_rstd_.data() + n * H,
                                         qkv_.data() + A, Q, m.param(p + "attention.k_norm.weight"),
                                         n, KV, hd, eps);
        }
        // Tables offset by p0: rope_forward gives row t the angle of table row t.
        rope_forward<float>(qkv_.data(), rope_cos_.data() + static_cast<std::size_t>(p0) * half,
                            rope_sin_.data() + static_cast<std::size_t>(p0) * half, 1, n, H + KV,
                            hd, Q);
        for (int t = 0; t < n; t++) {
            const float* row = qkv_.data() + static_cast<std::size_t>(t) * Q;
            std::memcpy(kc + static_cast<std::size_t>(p0 + t) * kvw, row + A, sizeof(float) * kvw);
            std::memcpy(vc + static_cast<std::size_t>(p0 + t) * kvw, row + A + kvw,
                        sizeof(float) * kvw);
        }
        attention_decode<float>(attn_.data(), qkv_.data(), Q, kc, vc, kvw, n, p0, H, KV, hd,
                                static_cast<float>(a.attn_softcap));
        matmul_forward<float>(x_.data(), attn_.data(), m.param(p + "attention.wo.weight"), n, A, D,
                              true);
        rmsnorm_forward<float>(xn_.data(), rstd_.data(), x_.data(), m.param(p + "ffn_norm.weight"),
                               n, D, eps);
        matmul_forward<float>(h13_.data(), xn_.data(), m.param(p + "feed_forward.w1.weight"), n, D,
                              a.ffn_in_dim());
        if (a.ffn == FfnType::swiglu)
            swiglu_forward<float>(gate_.data(), h13_.data(), n, F);
        else
            relu2_forward<float>(gate_.data(), h13_.data(), n, F);
        matmul_forward<float>(x_.data(), gate_.data(), m.param(p + "feed_forward.w2.weight"), n, F,
                              D, true);
    }
    length_ += n;
}

}  // namespace agpt
