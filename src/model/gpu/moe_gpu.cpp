// The MoE FFN on the GPU (moe_gpu.h). Compiled into agpt_lib by its source glob, so the whole
// file is empty without the CUDA backend.
#if defined(AGPT_HAVE_CUDA)

#include "model/gpu/moe_gpu.h"

#include <algorithm>
#include <type_traits>

#include "core/error.h"
#include "dist/communicator.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/model_ops.h"
#include "kernels/cuda/moe_dispatch.h"
#include "kernels/cuda/router.h"

namespace agpt {

using cuda::bf16;

namespace {

template <typename T>
void zero(T* p, std::size_t n, cudaStream_t stream) {
    if (n > 0) AGPT_CUDA_CHECK(cudaMemsetAsync(p, 0, n * sizeof(T), stream));
}

// h13 (N, 2F) = [x · w1ᵀ | x · w3ᵀ], the fused rows that SwiGLU reads.
template <typename T>
void swiglu_in_forward(cuda::Blas& blas, T* h13, const T* x, const T* w1, const T* w3, int N, int D,
                       int F) {
    cuda::gemm<T, T>(blas, false, true, N, F, D, 1.0f, x, D, w1, D, 0.0f, h13, 2 * F);
    cuda::gemm<T, T>(blas, false, true, N, F, D, 1.0f, x, D, w3, D, 0.0f, h13 + F, 2 * F);
}

// Accumulates dx (N,D), dw1, dw3 (F,D; fp32) from dh13 (N, 2F).
template <typename T>
void swiglu_in_backward(cuda::Blas& blas, T* dx, float* dw1, float* dw3, const T* dh13, const T* x,
                        const T* w1, const T* w3, int N, int D, int F) {
    cuda::gemm<T, T>(blas, false, false, N, D, F, 1.0f, dh13, 2 * F, w1, D, 1.0f, dx, D);
    cuda::gemm<T, T>(blas, false, false, N, D, F, 1.0f, dh13 + F, 2 * F, w3, D, 1.0f, dx, D);
    cuda::gemm<T, float>(blas, true, false, F, D, N, 1.0f, dh13, 2 * F, x, D, 1.0f, dw1, D);
    cuda::gemm<T, float>(blas, true, false, F, D, N, 1.0f, dh13 + F, 2 * F, x, D, 1.0f, dw3, D);
}

// Reallocates b (its contents lost) when it holds fewer than n values: the rows an expert rank
// receives vary from step to step.
template <typename T>
void grow(cuda::DeviceBuffer<T>& b, std::size_t n) {
    if (b.size() < n) b = cuda::DeviceBuffer<T>(n);
}

// A plan whose gather moves row row_token[r] to row r (moe_gather with k = 1).
cpu::MoePlan row_permutation(int* row_token) {
    cpu::MoePlan p;
    p.row_token = row_token;
    return p;
}

}  // namespace

template <typename T>
struct MoeFfnGpu<T>::Buffers {
    std::vector<int> host_offsets;
    cuda::DeviceBuffer<float> logits, scores, gates, aux_f, d_gates, d_logits;
    cuda::DeviceBuffer<T> d_logits_t;  // bf16 copy of d_logits for the router's GEMMs
    cuda::DeviceBuffer<int> experts, offsets, row_token, slot_row;
    // Routed experts, (N·k) rows sorted by expert: inputs, w1|w3 outputs, gated hidden, outputs;
    // the shared experts' (N) rows; backward temporaries (routed and shared take turns).
    cuda::DeviceBuffer<T> xs, h13, act, ys, shared_h13, shared_act, d_rows, d_h13, d_act;
};

template <typename T>
MoeFfnGpu<T>::MoeFfnGpu(const MoeShape& s, int max_tokens, cuda::Blas& blas,
                        std::shared_ptr<Buffers> shared)
    : shape_(s), max_tokens_(max_tokens), blas_(blas), buf_(std::move(shared)) {
    if (s.n_experts <= 0 || s.top_k <= 0 || s.top_k > s.n_experts || s.top_k > cuda::kMaxRouterTopK)
        fail(
            "model: MoE top_k {} must be between 1 and the number of experts {} (at most {} on "
            "cuda)",
            s.top_k, s.n_experts, cuda::kMaxRouterTopK);
    if (s.dim <= 0 || s.hidden <= 0 || s.n_shared_experts < 0)
        fail("model: MoE dim {}, hidden {} and shared experts {} must be positive", s.dim, s.hidden,
             s.n_shared_experts);
    if (s.aux_loss_alpha > 0 && s.n_experts > 1024)
        fail("model: the MoE balance loss on cuda takes at most 1024 experts, got {}", s.n_experts);
    const std::size_t N = max_tokens, E = s.n_experts, K = s.top_k, M = N * K, D = s.dim,
                      F = s.hidden, FS = s.shared_hidden();
    if (s.aux_loss_alpha > 0) seq_loss_ = cuda::DeviceBuffer<float>(N);
    load_ = cuda::DeviceBuffer<double>(E);
    reset_load();
    if (buf_) return;
    buf_ = std::make_shared<Buffers>();
    buf_->host_offsets.assign(E + 1, 0);
    buf_->logits = cuda::DeviceBuffer<float>(N * E);
    buf_->scores = cuda::DeviceBuffer<float>(N * E);
    buf_->gates = cuda::DeviceBuffer<float>(M);
    buf_->d_gates = cuda::DeviceBuffer<float>(M);
    buf_->d_logits = cuda::DeviceBuffer<float>(N * E);
    if constexpr (!std::is_same_v<T, float>) buf_->d_logits_t = cuda::DeviceBuffer<T>(N * E);
    if (s.aux_loss_alpha > 0) buf_->aux_f = cuda::DeviceBuffer<float>(N * E);
    buf_->experts = cuda::DeviceBuffer<int>(M);
    buf_->offsets = cuda::DeviceBuffer<int>(E + 1);
    buf_->row_token = cuda::DeviceBuffer<int>(M);
    buf_->slot_row = cuda::DeviceBuffer<int>(M);
    buf_->xs = cuda::DeviceBuffer<T>(M * D);
    buf_->h13 = cuda::DeviceBuffer<T>(M * 2 * F);
    buf_->act = cuda::DeviceBuffer<T>(M * F);
    buf_->ys = cuda::DeviceBuffer<T>(M * D);
    buf_->shared_h13 = cuda::DeviceBuffer<T>(N * 2 * FS);
    buf_->shared_act = cuda::DeviceBuffer<T>(N * FS);
    buf_->d_rows = cuda::DeviceBuffer<T>(std::max(M * D, N * FS));
    buf_->d_h13 = cuda::DeviceBuffer<T>(std::max(M * 2 * F, N * 2 * FS));
    buf_->d_act = cuda::DeviceBuffer<T>(M * F);
}

template <typename T>
const int* MoeFfnGpu<T>::experts() const {
    return buf_->experts.data();
}
template <typename T>
const float* MoeFfnGpu<T>::gates() const {
    return buf_->gates.data();
}
template <typename T>
const float* MoeFfnGpu<T>::scores() const {
    return buf_->scores.data();
}

template <typename T>
cpu::MoePlan MoeFfnGpu<T>::plan() {
    cpu::MoePlan p;
    p.n_experts = shape_.n_experts;
    p.offsets = buf_->offsets.data();
    p.row_token = buf_->row_token.data();
    p.slot_row = buf_->slot_row.data();
    return p;
}

template <typename T>
void MoeFfnGpu<T>::forward(T* out, const T* x, const MoeWeights<T>& w, int N, bool count_load,
                           int seq_len) {
    if (N > max_tokens_) fail("model: MoE got {} tokens, allocated for {}", N, max_tokens_);
    if (seq_len <= 0) seq_len = N;
    if (N % seq_len != 0) fail("model: MoE got {} tokens, not whole sequences of {}", N, seq_len);
    const int D = shape_.dim, E = shape_.n_experts, K = shape_.top_k, FS = shape_.shared_hidden();
    const cudaStream_t st = blas_.stream();
    last_tokens_ = N;
    last_seq_len_ = seq_len;
    cuda::matmul_forward<T, float>(blas_, buf_->logits.data(), x, w.router, N, D, E);
    cuda::router_forward(buf_->experts.data(), buf_->gates.data(), buf_->scores.data(),
                         buf_->logits.data(), w.expert_bias, N, E, K, shape_.router, st);
    const cpu::MoePlan p = plan();
    cuda::moe_plan(p, buf_->experts.data(), N, K, count_load ? load_.data() : nullptr, st);
    AGPT_CUDA_CHECK(cudaMemcpyAsync(buf_->host_offsets.data(), buf_->offsets.data(),
                                    sizeof(int) * (E + 1), cudaMemcpyDeviceToHost, st));
    if (shape_.aux_loss_alpha > 0)
        cuda::moe_aux_loss_forward(buf_->aux_f.data(), seq_loss_.data(), buf_->experts.data(),
                                   buf_->scores.data(), N, E, K, seq_len, st);
    cuda::moe_gather<T>(buf_->xs.data(), x, p, N, K, D, st);
    AGPT_CUDA_CHECK(cudaStreamSynchronize(st));  // host_offsets for the grouped GEMMs
    if (ep_ == nullptr) {
        experts_forward(buf_->ys.data(), buf_->xs.data(), w, buf_->host_offsets.data(), E, N * K);
    } else {
        dispatch();
        grow(ep_rows_, static_cast<std::size_t>(exchange_.received) * D);
        experts_forward(ep_rows_.data(), ep_xs_.data(), w, exchange_.local_offsets.data(),
                        exchange_.local_experts, exchange_.received);
        send_back(buf_->ys.data(), ep_rows_.data());
    }
    cuda::moe_combine<T>(out, buf_->ys.data(), buf_->gates.data(), p, N, K, D, st);
    if (FS > 0) {
        swiglu_in_forward<T>(blas_, buf_->shared_h13.data(), x, w.shared_w1, w.shared_w3, N, D, FS);
        cuda::swiglu_forward_vec<T>(buf_->shared_act.data(), buf_->shared_h13.data(), N, FS, st);
        cuda::matmul_forward<T, T>(blas_, out, buf_->shared_act.data(), w.shared_w2, N, FS, D,
                                   true);
    }
}

template <typename T>
void MoeFfnGpu<T>::backward(T* dx, const MoeGrads<float>& g, const T* dout, const T* x,
                            const MoeWeights<T>& w, int N, double aux_weight) {
    const int D = shape_.dim, E = shape_.n_experts, K = shape_.top_k, FS = shape_.shared_hidden(),
              M = N * K;
    const cudaStream_t st = blas_.stream();
    const cpu::MoePlan p = plan();
    if (FS > 0) {
        // d_rows = d(shared act) (N, FS), written by the GEMM (β = 0).
        cuda::gemm<T, T>(blas_, false, false, N, FS, D, 1.0f, dout, D, w.shared_w2, FS, 0.0f,
                         buf_->d_rows.data(), FS);
        cuda::gemm<T, float>(blas_, true, false, D, FS, N, 1.0f, dout, D, buf_->shared_act.data(),
                             FS, 1.0f, g.shared_w2, FS);
        cuda::swiglu_backward_overwrite<T>(buf_->d_h13.data(), buf_->d_rows.data(),
                                           buf_->shared_h13.data(), N, FS, st);
        swiglu_in_backward<T>(blas_, dx, g.shared_w1, g.shared_w3, buf_->d_h13.data(), x,
                              w.shared_w1, w.shared_w3, N, D, FS);
    }
    // Combine: d_rows holds d(ys), then d(xs), (M, D).
    zero(buf_->d_gates.data(), M, st);
    cuda::moe_combine_backward<T>(buf_->d_rows.data(), buf_->d_gates.data(), dout, buf_->ys.data(),
                                  buf_->gates.data(), p, N, K, D, st);
    if (ep_ == nullptr) {
        experts_backward(buf_->d_rows.data(), g, buf_->d_rows.data(), buf_->xs.data(), w,
                         buf_->host_offsets.data(), E, M);
    } else {
        send_forward(ep_rows_.data(), buf_->d_rows.data());
        experts_backward(ep_rows_.data(), g, ep_rows_.data(), ep_xs_.data(), w,
                         exchange_.local_offsets.data(), exchange_.local_experts,
                         exchange_.received);
        send_back(buf_->d_rows.data(), ep_rows_.data());
    }
    cuda::moe_gather_backward<T>(dx, buf_->d_rows.data(), p, N, K, D, st);
    // Router: the gates carry a gradient (the choice is piecewise constant), and the scores one
    // from the balance loss.
    zero(buf_->d_logits.data(), static_cast<std::size_t>(N) * E, st);
    cuda::router_backward(buf_->d_logits.data(), buf_->d_gates.data(), buf_->scores.data(),
                          buf_->experts.data(), N, E, K, shape_.router, st);
    if (shape_.aux_loss_alpha > 0 && aux_weight != 0.0)
        cuda::moe_aux_loss_backward(buf_->d_logits.data(), buf_->aux_f.data(), buf_->scores.data(),
                                    N, E, last_seq_len_, shape_.aux_loss_alpha, aux_weight,
                                    shape_.router.score, st);
    const T* d_logits = nullptr;
    if constexpr (std::is_same_v<T, float>) {
        d_logits = buf_->d_logits.data();
    } else {
        cuda::cast_to_bf16(buf_->d_logits_t.data(), buf_->d_logits.data(),
                           static_cast<std::size_t>(N) * E, st);
        d_logits = buf_->d_logits_t.data();
    }
    cuda::matmul_backward<T, float>(blas_, dx, g.router, d_logits, x, w.router, N, D, E);
}

template <typename T>
void MoeFfnGpu<T>::experts_forward(T* ys, const T* xs, const MoeWeights<T>& w,
                                   const int* host_offsets, int n_experts, int R) {
    const int D = shape_.dim, F = shape_.hidden;
    grow(buf_->h13, static_cast<std::size_t>(R) * 2 * F);
    grow(buf_->act, static_cast<std::size_t>(R) * F);
    cuda::grouped_matmul_forward<T>(blas_, buf_->h13.data(), 2 * F, xs, w.w1, host_offsets,
                                    n_experts, D, F);
    cuda::grouped_matmul_forward<T>(blas_, buf_->h13.data() + F, 2 * F, xs, w.w3, host_offsets,
                                    n_experts, D, F);
    cuda::swiglu_forward_vec<T>(buf_->act.data(), buf_->h13.data(), R, F, blas_.stream());
    cuda::grouped_matmul_forward<T>(blas_, ys, D, buf_->act.data(), w.w2, host_offsets, n_experts,
                                    F, D);
}

// dys and dxs may be the same rows: dys is read before dxs is written.
template <typename T>
void MoeFfnGpu<T>::experts_backward(T* dxs, const MoeGrads<float>& g, const T* dys, const T* xs,
                                    const MoeWeights<T>& w, const int* host_offsets, int n_experts,
                                    int R) {
    const int D = shape_.dim, F = shape_.hidden;
    const cudaStream_t st = blas_.stream();
    grow(buf_->d_act, static_cast<std::size_t>(R) * F);
    grow(buf_->d_h13, static_cast<std::size_t>(R) * 2 * F);
    zero(buf_->d_act.data(), static_cast<std::size_t>(R) * F, st);
    cuda::grouped_matmul_backward<T, float>(blas_, buf_->d_act.data(), g.w2, dys, D,
                                            buf_->act.data(), w.w2, host_offsets, n_experts, F, D);
    cuda::swiglu_backward_overwrite<T>(buf_->d_h13.data(), buf_->d_act.data(), buf_->h13.data(), R,
                                       F, st);
    zero(dxs, static_cast<std::size_t>(R) * D, st);
    cuda::grouped_matmul_backward<T, float>(blas_, dxs, g.w1, buf_->d_h13.data(), 2 * F, xs, w.w1,
                                            host_offsets, n_experts, D, F);
    cuda::grouped_matmul_backward<T, float>(blas_, dxs, g.w3, buf_->d_h13.data() + F, 2 * F, xs,
                                            w.w3, host_offsets, n_experts, D, F);
}

template <typename T>
void MoeFfnGpu<T>::set_expert_parallel(Communicator* ep) {
    const int E = shape_.n_experts;
    if (ep != nullptr) {
        if (E % ep->size() != 0)
            fail("model: {} routed experts cannot be divided over {} expert-parallel ranks", E,
                 ep->size());
        if (shape_.dim * sizeof(T) % sizeof(float) != 0)
            fail("model: MoE dim {} must be even for expert parallelism in bf16", shape_.dim);
    }
    ep_ = ep;
    const int e = ep_ ? ep_->size() : 1;
    exchange_.reset(e, E / e);
    ep_counts_ =
        ep_ ? cuda::DeviceBuffer<int>(2 * static_cast<std::size_t>(E)) : cuda::DeviceBuffer<int>();
}

template <typename T>
int MoeFfnGpu<T>::local_experts() const {
    return shape_.n_experts / (ep_ ? ep_->size() : 1);
}

template <typename T>
void MoeFfnGpu<T>::dispatch() {
    const int E = shape_.n_experts, El = exchange_.local_experts;
    const cudaStream_t st = blas_.stream();
    // Rows per expert of this rank's routing (block q: rank q's experts) to the experts' ranks.
    std::vector<int> expert_rows(E);
    const int* off = buf_->host_offsets.data();
    for (int x = 0; x < E; x++) expert_rows[x] = off[x + 1] - off[x];
    AGPT_CUDA_CHECK(cudaMemcpyAsync(ep_counts_.data(), expert_rows.data(), sizeof(int) * E,
                                    cudaMemcpyHostToDevice, st));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(st));
    ep_->all_to_all(ep_counts_.data(), ep_counts_.data() + E, El);
    AGPT_CUDA_CHECK(cudaMemcpy(exchange_.recv_expert_rows.data(), ep_counts_.data() + E,
                               sizeof(int) * E, cudaMemcpyDeviceToHost));
    exchange_.plan(off, static_cast<int>(shape_.dim * sizeof(T) / sizeof(float)));
    const std::size_t R = exchange_.received;
    // Row permutations for the gathers: expert-major row recv_order[i] is received row i.
    std::vector<int> inverse(R);
    for (std::size_t i = 0; i < R; i++) inverse[exchange_.recv_order[i]] = static_cast<int>(i);
    grow(ep_order_, R);
    grow(ep_inverse_, R);
    if (R > 0) {
        AGPT_CUDA_CHECK(cudaMemcpy(ep_order_.data(), exchange_.recv_order.data(), sizeof(int) * R,
                                   cudaMemcpyHostToDevice));
        AGPT_CUDA_CHECK(cudaMemcpy(ep_inverse_.data(), inverse.data(), sizeof(int) * R,
                                   cudaMemcpyHostToDevice));
    }
    grow(ep_xs_, R * shape_.dim);
    send_forward(ep_xs_.data(), buf_->xs.data());
}

template <typename T>
void MoeFfnGpu<T>::send_forward(T* out, const T* in) {
    const int R = exchange_.received, D = shape_.dim;
    grow(ep_wire_, static_cast<std::size_t>(R) * D);
    ep_->all_to_all_v(reinterpret_cast<const float*>(in), exchange_.send_values.data(),
                      reinterpret_cast<float*>(ep_wire_.data()), exchange_.recv_values.data());
    if (R > 0)
        cuda::moe_gather<T>(out, ep_wire_.data(), row_permutation(ep_inverse_.data()), R, 1, D,
                            blas_.stream());
}

template <typename T>
void MoeFfnGpu<T>::send_back(T* out, const T* rows) {
    const int R = exchange_.received, D = shape_.dim;
    grow(ep_wire_, static_cast<std::size_t>(R) * D);
    if (R > 0)
        cuda::moe_gather<T>(ep_wire_.data(), rows, row_permutation(ep_order_.data()), R, 1, D,
                            blas_.stream());
    ep_->all_to_all_v(reinterpret_cast<const float*>(ep_wire_.data()), exchange_.recv_values.data(),
                      reinterpret_cast<float*>(out), exchange_.send_values.data());
}

template <typename T>
double MoeFfnGpu<T>::aux_loss() const {
    if (shape_.aux_loss_alpha <= 0 || last_tokens_ == 0) return 0.0;
    const int S = last_tokens_ / last_seq_len_;
    std::vector<float> l(S);
    AGPT_CUDA_CHECK(cudaStreamSynchronize(blas_.stream()));
    AGPT_CUDA_CHECK(
        cudaMemcpy(l.data(), seq_loss_.data(), sizeof(float) * S, cudaMemcpyDeviceToHost));
    double sum = 0.0;
    for (float v : l) sum += shape_.aux_loss_alpha * v / S;
    return sum;
}

template <typename T>
std::vector<int> MoeFfnGpu<T>::last_load() const {
    std::vector<int> load(shape_.n_experts);
    for (int e = 0; e < shape_.n_experts; e++)
        load[e] = buf_->host_offsets[e + 1] - buf_->host_offsets[e];
    return load;
}

template <typename T>
std::vector<double> MoeFfnGpu<T>::tokens_per_expert() const {
    std::vector<double> load(shape_.n_experts);
    AGPT_CUDA_CHECK(cudaStreamSynchronize(blas_.stream()));
    load_.download(load.data());
    return load;
}

template <typename T>
void MoeFfnGpu<T>::reset_load() {
    zero(load_.data(), load_.size(), blas_.stream());
}

template <typename T>
std::size_t MoeFfnGpu<T>::bytes() const {
    return buf_->logits.bytes() + buf_->scores.bytes() + buf_->gates.bytes() + buf_->aux_f.bytes() +
           seq_loss_.bytes() + buf_->d_gates.bytes() + buf_->d_logits.bytes() +
           buf_->d_logits_t.bytes() + buf_->experts.bytes() + buf_->offsets.bytes() +
           buf_->row_token.bytes() + buf_->slot_row.bytes() + load_.bytes() + buf_->xs.bytes() +
           buf_->h13.bytes() + buf_->act.bytes() + buf_->ys.bytes() + buf_->shared_h13.bytes() +
           buf_->shared_act.bytes() + buf_->d_rows.bytes() + buf_->d_h13.bytes() +
           buf_->d_act.bytes() + ep_counts_.bytes() + ep_order_.bytes() + ep_inverse_.bytes() +
           ep_xs_.bytes() + ep_rows_.bytes() + ep_wire_.bytes();
}

template class MoeFfnGpu<float>;
template class MoeFfnGpu<bf16>;

}  // namespace agpt

#endif  // AGPT_HAVE_CUDA
