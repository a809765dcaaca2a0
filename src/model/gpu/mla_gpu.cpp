// MLA on the GPU (mla_gpu.h). Compiled into agpt_lib by its source glob, so the whole file is
// empty without the CUDA backend.
#if defined(AGPT_HAVE_CUDA)

#include "model/gpu/mla_gpu.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"

namespace agpt {

using cuda::bf16;

namespace {

template <typename T>
void zero(T* p, std::size_t n, cudaStream_t stream) {
    if (n > 0) AGPT_CUDA_CHECK(cudaMemsetAsync(p, 0, n * sizeof(T), stream));
}

}  // namespace

template <typename T>
MlaGpu<T>::MlaGpu(const MlaShape& s, int max_batch, int max_seq, cuda::Blas& blas)
    : shape_(s), max_tokens_(max_batch * max_seq), max_seq_(max_seq), blas_(blas) {
    if (s.n_heads <= 0 || s.kv_lora_rank <= 0 || s.qk_nope_head_dim < 0 ||
        s.qk_rope_head_dim <= 0 || s.v_head_dim <= 0 || s.q_lora_rank < 0)
        fail("model: MLA needs positive n_heads, kv_lora_rank, qk_rope_head_dim and v_head_dim");
    if (s.qk_rope_head_dim % 2 != 0)
        fail("model: MLA qk_rope_head_dim {} must be even for RoPE", s.qk_rope_head_dim);
    heads_.n_heads = s.n_heads;
    heads_.nope = s.qk_nope_head_dim;
    heads_.rope = s.qk_rope_head_dim;
    heads_.v = s.v_head_dim;
    heads_.padded = std::max(s.qk_head_dim(), s.v_head_dim);
    if (const std::string problem = mla_cuda_head_problem(s); !problem.empty())
        fail("model: {}", problem);
    // The attention kernel scales scores by HP^-½; q carries the rest of softmax_scale.
    q_scale_ =
        static_cast<float>(s.softmax_scale() * std::sqrt(static_cast<double>(heads_.padded)));
    const std::size_t N = max_tokens_, H = s.n_heads, P = s.qk_head_dim(), R = s.qk_rope_head_dim,
                      KVR = s.kv_lora_rank, QR = s.q_lora_rank,
                      KVB = H * (s.qk_nope_head_dim + s.v_head_dim), HP = heads_.padded,
                      V = s.v_head_dim;
    const std::vector<double> freq = mla_rope_inv_freq(s);
    std::vector<float> cos_t(static_cast<std::size_t>(max_seq) * R / 2), sin_t(cos_t.size());
    for (int t = 0; t < max_seq; t++)
        for (std::size_t i = 0; i < R / 2; i++) {
            cos_t[t * R / 2 + i] = static_cast<float>(std::cos(t * freq[i]));
            sin_t[t * R / 2 + i] = static_cast<float>(std::sin(t * freq[i]));
        }
    rope_cos_ = cuda::DeviceBuffer<float>(cos_t.size());
    rope_sin_ = cuda::DeviceBuffer<float>(sin_t.size());
    rope_cos_.upload(cos_t.data());
    rope_sin_.upload(sin_t.data());
    q_rstd_ = cuda::DeviceBuffer<float>(QR > 0 ? N : 0);
    kv_rstd_ = cuda::DeviceBuffer<float>(N);
    lse_ = cuda::DeviceBuffer<float>(N * H);
    qa_ = cuda::DeviceBuffer<T>(N * QR);
    qan_ = cuda::DeviceBuffer<T>(N * QR);
    ckv_ = cuda::DeviceBuffer<T>(N * KVR);
    kvn_ = cuda::DeviceBuffer<T>(N * KVR);
    kpe_ = cuda::DeviceBuffer<T>(N * R);
    kv_ = cuda::DeviceBuffer<T>(N * KVB);
    q_ = cuda::DeviceBuffer<T>(N * H * P);
    qkv_ = cuda::DeviceBuffer<T>(N * 3 * H * HP);
    att_ = cuda::DeviceBuffer<T>(N * H * HP);
    o_ = cuda::DeviceBuffer<T>(N * H * V);
    d_o_ = cuda::DeviceBuffer<T>(N * H * V);
    d_att_ = cuda::DeviceBuffer<T>(N * H * HP);
    d_qkv_ = cuda::DeviceBuffer<T>(N * 3 * H * HP);
    d_q_ = cuda::DeviceBuffer<T>(N * H * P);
    d_kv_ = cuda::DeviceBuffer<T>(N * KVB);
    d_kpe_ = cuda::DeviceBuffer<T>(N * R);
    d_kvn_ = cuda::DeviceBuffer<T>(N * KVR);
    d_ckv_ = cuda::DeviceBuffer<T>(N * KVR);
    d_qan_ = cuda::DeviceBuffer<T>(N * QR);
    d_qa_ = cuda::DeviceBuffer<T>(N * QR);
}

template <typename T>
void MlaGpu<T>::forward(T* out, const T* x, const MlaWeights<T>& w, int B, int T_len) {
    const int N = B * T_len;
    if (N > max_tokens_ || T_len > max_seq_)
        fail("model: MLA got {}×{} tokens, allocated for {} (seq {})", B, T_len, max_tokens_,
             max_seq_);
    const MlaShape& s = shape_;
    const int D = s.dim, H = s.n_heads, Pn = s.qk_nope_head_dim, R = s.qk_rope_head_dim, P = Pn + R,
              V = s.v_head_dim, KVR = s.kv_lora_rank, QR = s.q_lora_rank, HP = heads_.padded,
              KVB = H * (Pn + V);
    const cudaStream_t st = blas_.stream();
    const float eps = static_cast<float>(s.norm_eps);
    if (QR > 0) {
        cuda::matmul_forward<T, T>(blas_, qa_.data(), x, w.wq_a, N, D, QR);
        cuda::rmsnorm_forward<T>(qan_.data(), q_rstd_.data(), qa_.data(), w.q_norm, N, QR, eps, st);
        cuda::matmul_forward<T, T>(blas_, q_.data(), qan_.data(), w.wq_b, N, QR, H * P);
    } else {
        cuda::matmul_forward<T, T>(blas_, q_.data(), x, w.wq, N, D, H * P);
    }
    for (int h = 0; h < H; h++)
        cuda::rope_forward<T>(q_.data() + h * P + Pn, rope_cos_.data(), rope_sin_.data(), B, T_len,
                              1, R, H * P, st);
    // wkv_a's rows [0, KVR) give c_kv and [KVR, KVR+R) k_pe: two GEMMs into contiguous rows.
    cuda::matmul_forward<T, T>(blas_, ckv_.data(), x, w.wkv_a, N, D, KVR);
    cuda::matmul_forward<T, T>(blas_, kpe_.data(), x, w.wkv_a + static_cast<std::size_t>(KVR) * D,
                               N, D, R);
    cuda::rope_forward<T>(kpe_.data(), rope_cos_.data(), rope_sin_.data(), B, T_len, 1, R, R, st);
    cuda::rmsnorm_forward<T>(kvn_.data(), kv_rstd_.data(), ckv_.data(), w.kv_norm, N, KVR, eps, st);
    cuda::matmul_forward<T, T>(blas_, kv_.data(), kvn_.data(), w.wkv_b, N, KVR, KVB);
    cuda::mla_pack_qkv<T>(qkv_.data(), q_.data(), kv_.data(), kpe_.data(), heads_, N, q_scale_, st);
    cuda::attention_forward<T>(att_.data(), lse_.data(), qkv_.data(), B, T_len, H, H, HP, 0.0f, st);
    cuda::mla_unpad_heads<T>(o_.data(), att_.data(), heads_, N, st);
    cuda::matmul_forward<T, T>(blas_, out, o_.data(), w.wo, N, H * V, D, true);
}

template <typename T>
void MlaGpu<T>::backward(T* dx, const MlaGrads<float>& g, const T* dout, const T* x,
                         const MlaWeights<T>& w, int B, int T_len) {
    const int N = B * T_len;
    const MlaShape& s = shape_;
    const int D = s.dim, H = s.n_heads, Pn = s.qk_nope_head_dim, R = s.qk_rope_head_dim, P = Pn + R,
              V = s.v_head_dim, KVR = s.kv_lora_rank, QR = s.q_lora_rank, HP = heads_.padded,
              KVB = H * (Pn + V);
    const cudaStream_t st = blas_.stream();
    // Input gradients that start a chain are written by their GEMM (β = 0), not zeroed and
    // accumulated.
    cuda::gemm<T, T>(blas_, false, false, N, H * V, D, 1.0f, dout, D, w.wo, H * V, 0.0f,
                     d_o_.data(), H * V);
    cuda::matmul_backward<T, float>(blas_, nullptr, g.wo, dout, o_.data(), w.wo, N, H * V, D);
    cuda::mla_pad_heads<T>(d_att_.data(), d_o_.data(), heads_, N, st);
    cuda::attention_backward<T>(d_qkv_.data(), d_att_.data(), qkv_.data(), att_.data(), lse_.data(),
                                B, T_len, H, H, HP, 0.0f, st);
    cuda::mla_unpack_qkv<T>(d_q_.data(), d_kv_.data(), d_kpe_.data(), d_qkv_.data(), heads_, N,
                            q_scale_, st);
    for (int h = 0; h < H; h++)
        cuda::rope_backward<T>(d_q_.data() + h * P + Pn, rope_cos_.data(), rope_sin_.data(), B,
                               T_len, 1, R, H * P, st);
    cuda::rope_backward<T>(d_kpe_.data(), rope_cos_.data(), rope_sin_.data(), B, T_len, 1, R, R,
                           st);
    cuda::gemm<T, T>(blas_, false, false, N, KVR, KVB, 1.0f, d_kv_.data(), KVB, w.wkv_b, KVR, 0.0f,
                     d_kvn_.data(), KVR);
    cuda::matmul_backward<T, float>(blas_, nullptr, g.wkv_b, d_kv_.data(), kvn_.data(), w.wkv_b, N,
                                    KVR, KVB);
    zero(d_ckv_.data(), static_cast<std::size_t>(N) * KVR, st);
    cuda::rmsnorm_backward<T>(d_ckv_.data(), g.kv_norm, d_kvn_.data(), ckv_.data(), w.kv_norm,
                              kv_rstd_.data(), N, KVR, st);
    const std::size_t pe_rows = static_cast<std::size_t>(KVR) * D;
    cuda::matmul_backward<T, float>(blas_, dx, g.wkv_a, d_ckv_.data(), x, w.wkv_a, N, D, KVR);
    cuda::matmul_backward<T, float>(blas_, dx, g.wkv_a + pe_rows, d_kpe_.data(), x,
                                    w.wkv_a + pe_rows, N, D, R);
    if (QR > 0) {
        cuda::gemm<T, T>(blas_, false, false, N, QR, H * P, 1.0f, d_q_.data(), H * P, w.wq_b, QR,
                         0.0f, d_qan_.data(), QR);
        cuda::matmul_backward<T, float>(blas_, nullptr, g.wq_b, d_q_.data(), qan_.data(), w.wq_b, N,
                                        QR, H * P);
        zero(d_qa_.data(), static_cast<std::size_t>(N) * QR, st);
        cuda::rmsnorm_backward<T>(d_qa_.data(), g.q_norm, d_qan_.data(), qa_.data(), w.q_norm,
                                  q_rstd_.data(), N, QR, st);
        cuda::matmul_backward<T, float>(blas_, dx, g.wq_a, d_qa_.data(), x, w.wq_a, N, D, QR);
    } else {
        cuda::matmul_backward<T, float>(blas_, dx, g.wq, d_q_.data(), x, w.wq, N, D, H * P);
    }
}

template <typename T>
std::size_t MlaGpu<T>::bytes() const {
    std::size_t b =
        rope_cos_.bytes() + rope_sin_.bytes() + q_rstd_.bytes() + kv_rstd_.bytes() + lse_.bytes();
    for (const auto* v :
         {&qa_,  &qan_,   &ckv_,   &kvn_, &kpe_,  &kv_,    &q_,     &qkv_,   &att_,   &o_,
          &d_o_, &d_att_, &d_qkv_, &d_q_, &d_kv_, &d_kpe_, &d_kvn_, &d_ckv_, &d_qan_, &d_qa_})
        b += v->bytes();
    return b;
}

template class MlaGpu<float>;
template class MlaGpu<bf16>;

}  // namespace agpt

#endif  // AGPT_HAVE_CUDA
