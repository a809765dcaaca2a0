#pragma once
// Multi-head latent attention (model/mla.h's Mla) on one CUDA device, on device pointers: the
// same projections (q LoRA or plain wq, compressed KV, decoupled RoPE with YaRN), the heads packed
// at head size HP = max(qk_nope + qk_rope, v_head) with zero padding (kernels/cuda/mla.h) through
// the GPU causal attention (kernels/cuda/attention.h), forward and backward.
//
// Precision: weights and activations of type T (fp32, or bf16 with fp32 accumulation), norm
// statistics and the attention's lse in fp32, gradients fp32 (MlaGrads<float>, accumulated).
// The GPU attention takes head sizes up to 192, so HP <= 192 (moe_debug, moe_tiny, the table
// flavors' 192; the constructor refuses wider heads).
//
// Compiled only with the CUDA backend (AGPT_HAVE_CUDA). Intended use (device pointers, blas's
// stream):
//   MlaGpu<bf16> mla(shape, B, T, blas);
//   mla.forward(out, x, weights, B, T);             // out (B·T, D) += MLA(x)
//   mla.backward(dx, grads, dout, x, weights, B, T);
#include <cstddef>

#include "kernels/cuda/device.h"
#include "kernels/cuda/mla.h"
#include "model/mla.h"

namespace agpt {

template <typename T>
class MlaGpu {
  public:
    MlaGpu(const MlaShape& shape, int max_batch, int max_seq, cuda::Blas& blas);
    const MlaShape& shape() const { return shape_; }
    // out (B·T, D) += MLA(x); x (B·T, D). Keeps what backward needs.
    void forward(T* out, const T* x, const MlaWeights<T>& w, int B, int T_len);
    // Accumulates dx and the fp32 weight gradients of the matching forward from dout (B·T, D).
    void backward(T* dx, const MlaGrads<float>& g, const T* dout, const T* x,
                  const MlaWeights<T>& w, int B, int T_len);
    // Device bytes of the RoPE tables, saved activations and backward temporaries.
    std::size_t bytes() const;

  private:
    MlaShape shape_;
    int max_tokens_, max_seq_;
    cuda::MlaHeads heads_;
    float q_scale_;
    cuda::Blas& blas_;
    cuda::DeviceBuffer<float> rope_cos_, rope_sin_, q_rstd_, kv_rstd_, lse_;
    // Saved: q LoRA input and normed, c_kv and its normed copy, k_pe (rotated), wkv_b's output,
    // q (rotated), the packed heads, the attention output, the per-head output (N, H·v).
    cuda::DeviceBuffer<T> qa_, qan_, ckv_, kvn_, kpe_, kv_, q_, qkv_, att_, o_;
    // Backward temporaries.
    cuda::DeviceBuffer<T> d_o_, d_att_, d_qkv_, d_q_, d_kv_, d_kpe_, d_kvn_, d_ckv_, d_qan_, d_qa_;
};

}  // namespace agpt
