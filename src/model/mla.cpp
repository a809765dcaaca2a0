#include "model/mla.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"

namespace agpt {

using namespace agpt::cpu;

double MlaShape::softmax_scale() const {
    double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
    if (yarn()) {
        const double m = 0.1 * mscale * std::log(rope_factor) + 1.0;
        scale *= m * m;
    }
    return scale;
}

std::string mla_cuda_head_problem(const MlaShape& s) {
    constexpr int kMaxCudaHead = 192;  // kernels/cuda/attention.h
    const int padded = std::max(s.qk_head_dim(), s.v_head_dim);
    if (padded <= kMaxCudaHead) return {};
    return fmt::format(
        "MLA on cuda takes head sizes max(qk_nope + qk_rope, v_head) up to {}, got {} (not on "
        "cuda yet)",
        kMaxCudaHead, padded);
}

std::vector<double> mla_rope_inv_freq(const MlaShape& s) {
    const int dim = s.qk_rope_head_dim, half = dim / 2;
    std::vector<double> freq(half);
    for (int i = 0; i < half; i++) freq[i] = std::pow(s.rope_theta, -2.0 * i / dim);
    if (!s.yarn()) return freq;
    // The dimension whose wavelength fits `rotations` times into the original context.
    auto correction_dim = [&](double rotations) {
        return dim * std::log(s.original_seq_len / (rotations * 2 * std::numbers::pi)) /
               (2 * std::log(s.rope_theta));
    };
    const double low = std::max(std::floor(correction_dim(s.beta_fast)), 0.0);
    double high = std::min(std::ceil(correction_dim(s.beta_slow)), dim - 1.0);
    if (low == high) high += 0.001;
    for (int i = 0; i < half; i++) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
        const double smooth = 1.0 - ramp;
        freq[i] = freq[i] / s.rope_factor * (1.0 - smooth) + freq[i] * smooth;
    }
    return freq;
}

template <typename T>
Mla<T>::Mla(const MlaShape& s, int max_batch, int max_seq)
    : shape_(s), max_tokens_(max_batch * max_seq), max_seq_(max_seq) {
    if (s.n_heads <= 0 || s.kv_lora_rank <= 0 || s.qk_nope_head_dim < 0 ||
        s.qk_rope_head_dim <= 0 || s.v_head_dim <= 0 || s.q_lora_rank < 0)
        fail("model: MLA needs positive n_heads, kv_lora_rank, qk_rope_head_dim and v_head_dim");
    if (s.qk_rope_head_dim % 2 != 0)
        fail("model: MLA qk_rope_head_dim {} must be even for RoPE", s.qk_rope_head_dim);
    head_pad_ = std::max(s.qk_head_dim(), s.v_head_dim);
    const std::size_t N = max_tokens_, H = s.n_heads, P = s.qk_head_dim(), R = s.qk_rope_head_dim,
                      KVR = s.kv_lora_rank, QR = s.q_lora_rank,
                      KVB = H * (s.qk_nope_head_dim + s.v_head_dim), HP = head_pad_,
                      V = s.v_head_dim;
    const std::vector<double> freq = mla_rope_inv_freq(s);
    rope_cos_.resize(static_cast<std::size_t>(max_seq) * R / 2);
    rope_sin_.resize(rope_cos_.size());
    for (int t = 0; t < max_seq; t++)
        for (std::size_t i = 0; i < R / 2; i++) {
            rope_cos_[t * R / 2 + i] = static_cast<T>(std::cos(t * freq[i]));
            rope_sin_[t * R / 2 + i] = static_cast<T>(std::sin(t * freq[i]));
        }
    qa_.resize(N * QR);
    qan_.resize(N * QR);
    q_rstd_.resize(QR > 0 ? N : 0);
    kva_.resize(N * (KVR + R));
    kvn_.resize(N * KVR);
    kv_rstd_.resize(N);
    kv_.resize(N * KVB);
    q_.resize(N * H * P);
    qkv_.resize(N * 3 * H * HP);
    att_.resize(N * H * HP);
    lse_.resize(N * H);
    o_.resize(N * H * V);
    d_o_.resize(N * H * V);
    d_att_.resize(N * H * HP);
    d_qkv_.resize(N * 3 * H * HP);
    d_q_.resize(N * H * P);
    d_kv_.resize(N * KVB);
    d_kvn_.resize(N * KVR);
    d_kva_.resize(N * (KVR + R));
    d_qan_.resize(N * QR);
    d_qa_.resize(N * QR);
}

template <typename T>
void Mla<T>::forward(T* out, const T* x, const MlaWeights<T>& w, int B, int T_len) {
    const int N = B * T_len;
    if (N > max_tokens_ || T_len > max_seq_)
        fail("model: MLA got {}×{} tokens, allocated for {} (seq {})", B, T_len, max_tokens_,
             max_seq_);
    const MlaShape& s = shape_;
    const int D = s.dim, H = s.n_heads, Pn = s.qk_nope_head_dim, R = s.qk_rope_head_dim, P = Pn + R,
              V = s.v_head_dim, KVR = s.kv_lora_rank, QR = s.q_lora_rank, HP = head_pad_,
              KVB = H * (Pn + V);
    const T eps = static_cast<T>(s.norm_eps);
    if (QR > 0) {
        matmul_forward<T>(qa_.data(), x, w.wq_a, N, D, QR);
        rmsnorm_forward<T>(qan_.data(), q_rstd_.data(), qa_.data(), w.q_norm, N, QR, eps);
        matmul_forward<T>(q_.data(), qan_.data(), w.wq_b, N, QR, H * P);
    } else {
        matmul_forward<T>(q_.data(), x, w.wq, N, D, H * P);
    }
    for (int h = 0; h < H; h++)
        rope_forward<T>(q_.data() + h * P + Pn, rope_cos_.data(), rope_sin_.data(), B, T_len, 1, R,
                        H * P);
    matmul_forward<T>(kva_.data(), x, w.wkv_a, N, D, KVR + R);
    rope_forward<T>(kva_.data() + KVR, rope_cos_.data(), rope_sin_.data(), B, T_len, 1, R, KVR + R);
    rmsnorm_heads_forward<T>(kvn_.data(), KVR, kv_rstd_.data(), kva_.data(), KVR + R, w.kv_norm, N,
                             1, KVR, eps);
    matmul_forward<T>(kv_.data(), kvn_.data(), w.wkv_b, N, KVR, KVB);
    // The attention kernel scales scores by HP^-½; q carries the rest of softmax_scale.
    const T q_scale = static_cast<T>(s.softmax_scale() * std::sqrt(static_cast<double>(HP)));
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        T* row = qkv_.data() + static_cast<std::size_t>(n) * 3 * H * HP;
        std::fill(row, row + 3 * H * HP, T(0));
        const T* q = q_.data() + static_cast<std::size_t>(n) * H * P;
        const T* kv = kv_.data() + static_cast<std::size_t>(n) * KVB;
        const T* k_pe = kva_.data() + static_cast<std::size_t>(n) * (KVR + R) + KVR;
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < P; i++) row[h * HP + i] = q_scale * q[h * P + i];
            T* k = row + (H + h) * HP;
            std::copy(kv + h * (Pn + V), kv + h * (Pn + V) + Pn, k);
            std::copy(k_pe, k_pe + R, k + Pn);
            std::copy(kv + h * (Pn + V) + Pn, kv + (h + 1) * (Pn + V), row + (2 * H + h) * HP);
        }
    }
    attention_forward<T>(att_.data(), lse_.data(), qkv_.data(), B, T_len, H, H, HP);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            std::copy_n(att_.data() + (static_cast<std::size_t>(n) * H + h) * HP, V,
                        o_.data() + (static_cast<std::size_t>(n) * H + h) * V);
    matmul_forward<T>(out, o_.data(), w.wo, N, H * V, D, true);
}

template <typename T>
void Mla<T>::backward(T* dx, const MlaGrads<T>& g, const T* dout, const T* x,
                      const MlaWeights<T>& w, int B, int T_len) {
    const int N = B * T_len;
    const MlaShape& s = shape_;
    const int D = s.dim, H = s.n_heads, Pn = s.qk_nope_head_dim, R = s.qk_rope_head_dim, P = Pn + R,
              V = s.v_head_dim, KVR = s.kv_lora_rank, QR = s.q_lora_rank, HP = head_pad_,
              KVB = H * (Pn + V);
    auto zero = [](std::vector<T>& v, std::size_t n) {
        std::fill(v.begin(), v.begin() + static_cast<long>(n), T(0));
    };
    const std::size_t NS = N;
    zero(d_o_, NS * H * V);
    matmul_backward<T>(d_o_.data(), g.wo, dout, o_.data(), w.wo, N, H * V, D);
    zero(d_att_, NS * H * HP);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            std::copy_n(d_o_.data() + (static_cast<std::size_t>(n) * H + h) * V, V,
                        d_att_.data() + (static_cast<std::size_t>(n) * H + h) * HP);
    zero(d_qkv_, NS * 3 * H * HP);
    attention_backward<T>(d_qkv_.data(), d_att_.data(), qkv_.data(), att_.data(), lse_.data(), B,
                          T_len, H, H, HP);
    const T q_scale = static_cast<T>(s.softmax_scale() * std::sqrt(static_cast<double>(HP)));
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const T* row = d_qkv_.data() + static_cast<std::size_t>(n) * 3 * H * HP;
        T* dq = d_q_.data() + static_cast<std::size_t>(n) * H * P;
        T* dkv = d_kv_.data() + static_cast<std::size_t>(n) * KVB;
        T* dkva = d_kva_.data() + static_cast<std::size_t>(n) * (KVR + R);
        std::fill(dkva, dkva + KVR + R, T(0));
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < P; i++) dq[h * P + i] = q_scale * row[h * HP + i];
            const T* dk = row + (H + h) * HP;
            std::copy(dk, dk + Pn, dkv + h * (Pn + V));
            for (int i = 0; i < R; i++) dkva[KVR + i] += dk[Pn + i];  // k_pe is shared
            std::copy_n(row + (2 * H + h) * HP, V, dkv + h * (Pn + V) + Pn);
        }
    }
    for (int h = 0; h < H; h++)
        rope_backward<T>(d_q_.data() + h * P + Pn, rope_cos_.data(), rope_sin_.data(), B, T_len, 1,
                         R, H * P);
    rope_backward<T>(d_kva_.data() + KVR, rope_cos_.data(), rope_sin_.data(), B, T_len, 1, R,
                     KVR + R);
    zero(d_kvn_, NS * KVR);
    matmul_backward<T>(d_kvn_.data(), g.wkv_b, d_kv_.data(), kvn_.data(), w.wkv_b, N, KVR, KVB);
    rmsnorm_heads_backward<T>(d_kva_.data(), KVR + R, g.kv_norm, d_kvn_.data(), KVR, kva_.data(),
                              KVR + R, w.kv_norm, kv_rstd_.data(), N, 1, KVR);
    matmul_backward<T>(dx, g.wkv_a, d_kva_.data(), x, w.wkv_a, N, D, KVR + R);
    if (QR > 0) {
        zero(d_qan_, NS * QR);
        matmul_backward<T>(d_qan_.data(), g.wq_b, d_q_.data(), qan_.data(), w.wq_b, N, QR, H * P);
        zero(d_qa_, NS * QR);
        rmsnorm_backward<T>(d_qa_.data(), g.q_norm, d_qan_.data(), qa_.data(), w.q_norm,
                            q_rstd_.data(), N, QR);
        matmul_backward<T>(dx, g.wq_a, d_qa_.data(), x, w.wq_a, N, D, QR);
    } else {
        matmul_backward<T>(dx, g.wq, d_q_.data(), x, w.wq, N, D, H * P);
    }
}

template <typename T>
std::size_t Mla<T>::bytes() const {
    std::size_t n = rope_cos_.size() + rope_sin_.size();
    for (const auto* v :
         {&qa_, &qan_, &q_rstd_, &kva_,   &kvn_, &kv_rstd_, &kv_,    &q_,     &qkv_,   &att_, &lse_,
          &o_,  &d_o_, &d_att_,  &d_qkv_, &d_q_, &d_kv_,    &d_kvn_, &d_kva_, &d_qan_, &d_qa_})
        n += v->size();
    return n * sizeof(T);
}

template <typename T>
std::size_t Mla<T>::bytes_for(const MlaShape& s, int max_batch, int max_seq) {
    const std::size_t N = static_cast<std::size_t>(max_batch) * max_seq, H = s.n_heads,
                      P = s.qk_head_dim(), R = s.qk_rope_head_dim, KVR = s.kv_lora_rank,
                      QR = s.q_lora_rank, KVB = H * (s.qk_nope_head_dim + s.v_head_dim),
                      HP = std::max(s.qk_head_dim(), s.v_head_dim), V = s.v_head_dim;
    const std::size_t rope = 2 * (static_cast<std::size_t>(max_seq) * R / 2);
    const std::size_t floats = rope + 4 * N * QR + (QR > 0 ? N : 0) + 2 * N * (KVR + R) +
                               2 * N * KVR + N + 2 * N * KVB + 2 * N * H * P + 2 * N * 3 * H * HP +
                               2 * N * H * HP + N * H + 2 * N * H * V;
    return floats * sizeof(T);
}

template class Mla<float>;
template class Mla<double>;

}  // namespace agpt
