#pragma once
// Multi-head latent attention (DeepSeek-V2/V3), with an explicit forward and backward over
// caller-owned weights:
//
//   q   = wq x                              or  wq_b · q_norm(wq_a x)        (q_lora_rank > 0)
//   kva = wkv_a x = [c_kv (kv_lora_rank) | k_pe (qk_rope)]
//   [k_nope | v] per head = wkv_b · kv_norm(c_kv)
//   q_h = [q_nope_h | rope(q_pe_h)],  k_h = [k_nope_h | rope(k_pe)]   (k_pe shared by all heads)
//   out = wo · causal_softmax(q_h·k_hᵀ · softmax_scale) v_h
//
// softmax_scale = (qk_nope + qk_rope)^-½, times mscale² when YaRN extends the context
// (max_seq_len > original_seq_len, DeepSeek-V3's rule). RoPE uses the project's rotate-half
// layout (cpu/rope.h) on the qk_rope part, with YaRN's frequency correction in the same case.
// The heads go through the project's attention kernel (cpu/attention.h) at head size
// max(qk_nope + qk_rope, v_head): v is zero-padded, which leaves the output exact.
//
// Weights (torchtitan names): wq (H·(nope+rope), D) or wq_a (q_lora, D), q_norm (q_lora),
// wq_b (H·(nope+rope), q_lora); wkv_a (kv_lora + rope, D); kv_norm (kv_lora);
// wkv_b (H·(nope + v), kv_lora); wo (D, H·v).
//
// Intended use:
//   Mla<float> mla(shape, B, T);
//   mla.forward(out, x, weights, B, T);            // out (B·T, D) += MLA(x)
//   mla.backward(dx, grads, dout, x, weights, B, T);
#include <cstddef>
#include <string>
#include <vector>

namespace agpt {

struct MlaShape {
    int dim = 0;
    int n_heads = 0;
    int q_lora_rank = 0;  // 0: a plain wq projection
    int kv_lora_rank = 0;
    int qk_nope_head_dim = 0;
    int qk_rope_head_dim = 0;
    int v_head_dim = 0;
    double norm_eps = 1e-5;
    double rope_theta = 10000.0;
    // YaRN (active when max_seq_len > original_seq_len).
    int max_seq_len = 4096;
    int original_seq_len = 4096;
    double rope_factor = 40.0;
    int beta_fast = 32;
    int beta_slow = 1;
    double mscale = 1.0;
    int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
    bool yarn() const { return max_seq_len > original_seq_len; }
    double softmax_scale() const;
};

// On cuda the heads run packed at max(qk_nope + qk_rope, v_head) through the GPU attention,
// which takes head sizes up to 192: why `s` cannot run there ("" when it can). MlaGpu and
// check_cuda_training refuse with it.
std::string mla_cuda_head_problem(const MlaShape& s);

// YaRN-corrected inverse frequencies (qk_rope/2) of the rope part, as DeepSeek-V3 computes them.
std::vector<double> mla_rope_inv_freq(const MlaShape& s);

template <typename T>
struct MlaWeights {
    const T *wq = nullptr, *wq_a = nullptr, *q_norm = nullptr, *wq_b = nullptr;
    const T *wkv_a = nullptr, *kv_norm = nullptr, *wkv_b = nullptr, *wo = nullptr;
};

template <typename T>
struct MlaGrads {
    T *wq = nullptr, *wq_a = nullptr, *q_norm = nullptr, *wq_b = nullptr;
    T *wkv_a = nullptr, *kv_norm = nullptr, *wkv_b = nullptr, *wo = nullptr;
};

template <typename T>
class Mla {
  public:
    Mla(const MlaShape& shape, int max_batch, int max_seq);
    const MlaShape& shape() const { return shape_; }
    // out (B·T, D) += MLA(x); x (B·T, D). Keeps what backward needs.
    void forward(T* out, const T* x, const MlaWeights<T>& w, int B, int T_len);
    // Accumulates dx and the weights' gradients of the matching forward from dout (B·T, D).
    void backward(T* dx, const MlaGrads<T>& g, const T* dout, const T* x, const MlaWeights<T>& w,
                  int B, int T_len);
    // Bytes of the buffers this layer holds (RoPE tables, saved activations, backward
    // temporaries); bytes_for gives the same for a shape without building the layer.
    std::size_t bytes() const;
    static std::size_t bytes_for(const MlaShape& shape, int max_batch, int max_seq);

  private:
    MlaShape shape_;
    int max_tokens_, max_seq_, head_pad_;
    std::vector<T> rope_cos_, rope_sin_;
    // Saved: q lora input/normed/rstd, kva (k_pe rotated), normed c_kv and rstd, wkv_b output,
    // q (rotated, N·H·(nope+rope)), packed heads for the attention kernel, its output and lse,
    // and the compact per-head output (N, H·v).
    std::vector<T> qa_, qan_, q_rstd_, kva_, kvn_, kv_rstd_, kv_, q_, qkv_, att_, lse_, o_;
    // Backward temporaries.
    std::vector<T> d_o_, d_att_, d_qkv_, d_q_, d_kv_, d_kvn_, d_kva_, d_qan_, d_qa_;
};

}  // namespace agpt
