// The MoE FFN on the GPU (moe_gpu.h). Compiled into agpt_lib by its source glob, so the whole
// file is empty without the CUDA backend.
#if defined(AGPT_HAVE_CUDA)

#include "model/gpu/moe_gpu.h"

#include <algorithm>
#include <type_traits>

#include "core/error.h"
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

}  // namespace

template <typename T>
MoeFfnGpu<T>::MoeFfnGpu(const MoeShape& s, int max_tokens, cuda::Blas& blas)
    : shape_(s), max_tokens_(max_tokens), blas_(blas) {
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
    host_offsets_.assign(E + 1, 0);
    logits_ = cuda::DeviceBuffer<float>(N * E);
    scores_ = cuda::DeviceBuffer<float>(N * E);
    gates_ = cuda::DeviceBuffer<float>(M);
    d_gates_ = cuda::DeviceBuffer<float>(M);
    d_logits_ = cuda::DeviceBuffer<float>(N * E);
    if constexpr (!std::is_same_v<T, float>) d_logits_t_ = cuda::DeviceBuffer<T>(N * E);
    if (s.aux_loss_alpha > 0) {
        aux_f_ = cuda::DeviceBuffer<float>(N * E);
        seq_loss_ = cuda::DeviceBuffer<float>(N);
    }
    experts_ = cuda::DeviceBuffer<int>(M);
    offsets_ = cuda::DeviceBuffer<int>(E + 1);
    row_token_ = cuda::DeviceBuffer<int>(M);
    slot_row_ = cuda::DeviceBuffer<int>(M);
    load_ = cuda::DeviceBuffer<double>(E);
    xs_ = cuda::DeviceBuffer<T>(M * D);
    h13_ = cuda::DeviceBuffer<T>(M * 2 * F);
    act_ = cuda::DeviceBuffer<T>(M * F);
    ys_ = cuda::DeviceBuffer<T>(M * D);
    shared_h13_ = cuda::DeviceBuffer<T>(N * 2 * FS);
    shared_act_ = cuda::DeviceBuffer<T>(N * FS);
    d_rows_ = cuda::DeviceBuffer<T>(std::max(M * D, N * FS));
    d_h13_ = cuda::DeviceBuffer<T>(std::max(M * 2 * F, N * 2 * FS));
    d_act_ = cuda::DeviceBuffer<T>(M * F);
    reset_load();
}

template <typename T>
cpu::MoePlan MoeFfnGpu<T>::plan() {
    cpu::MoePlan p;
    p.n_experts = shape_.n_experts;
    p.offsets = offsets_.data();
    p.row_token = row_token_.data();
    p.slot_row = slot_row_.data();
    return p;
}

template <typename T>
void MoeFfnGpu<T>::forward(T* out, const T* x, const MoeWeights<T>& w, int N, bool count_load,
                           int seq_len) {
    if (N > max_tokens_) fail("model: MoE got {} tokens, allocated for {}", N, max_tokens_);
    if (seq_len <= 0) seq_len = N;
    if (N % seq_len != 0) fail("model: MoE got {} tokens, not whole sequences of {}", N, seq_len);
    const int D = shape_.dim, E = shape_.n_experts, K = shape_.top_k, F = shape_.hidden,
              FS = shape_.shared_hidden();
    const cudaStream_t st = blas_.stream();
    last_tokens_ = N;
    last_seq_len_ = seq_len;
    cuda::matmul_forward<T, float>(blas_, logits_.data(), x, w.router, N, D, E);
    cuda::router_forward(experts_.data(), gates_.data(), scores_.data(), logits_.data(),
                         w.expert_bias, N, E, K, shape_.router, st);
    const cpu::MoePlan p = plan();
    cuda::moe_plan(p, experts_.data(), N, K, count_load ? load_.data() : nullptr, st);
    AGPT_CUDA_CHECK(cudaMemcpyAsync(host_offsets_.data(), offsets_.data(), sizeof(int) * (E + 1),
                                    cudaMemcpyDeviceToHost, st));
    if (shape_.aux_loss_alpha > 0)
        cuda::moe_aux_loss_forward(aux_f_.data(), seq_loss_.data(), experts_.data(), scores_.data(),
                                   N, E, K, seq_len, st);
    cuda::moe_gather<T>(xs_.data(), x, p, N, K, D, st);
    AGPT_CUDA_CHECK(cudaStreamSynchronize(st));  // host_offsets_ for the grouped GEMMs
    const int* off = host_offsets_.data();
    cuda::grouped_matmul_forward<T>(blas_, h13_.data(), 2 * F, xs_.data(), w.w1, off, E, D, F);
    cuda::grouped_matmul_forward<T>(blas_, h13_.data() + F, 2 * F, xs_.data(), w.w3, off, E, D, F);
    cuda::swiglu_forward_vec<T>(act_.data(), h13_.data(), N * K, F, st);
    cuda::grouped_matmul_forward<T>(blas_, ys_.data(), D, act_.data(), w.w2, off, E, F, D);
    cuda::moe_combine<T>(out, ys_.data(), gates_.data(), p, N, K, D, st);
    if (FS > 0) {
        swiglu_in_forward<T>(blas_, shared_h13_.data(), x, w.shared_w1, w.shared_w3, N, D, FS);
        cuda::swiglu_forward_vec<T>(shared_act_.data(), shared_h13_.data(), N, FS, st);
        cuda::matmul_forward<T, T>(blas_, out, shared_act_.data(), w.shared_w2, N, FS, D, true);
    }
}

template <typename T>
void MoeFfnGpu<T>::backward(T* dx, const MoeGrads<float>& g, const T* dout, const T* x,
                            const MoeWeights<T>& w, int N, double aux_weight) {
    const int D = shape_.dim, E = shape_.n_experts, K = shape_.top_k, F = shape_.hidden,
              FS = shape_.shared_hidden(), M = N * K;
    const cudaStream_t st = blas_.stream();
    const cpu::MoePlan p = plan();
    const int* off = host_offsets_.data();
    if (FS > 0) {
        // d_rows_ = d(shared act) (N, FS), written by the GEMM (β = 0).
        cuda::gemm<T, T>(blas_, false, false, N, FS, D, 1.0f, dout, D, w.shared_w2, FS, 0.0f,
                         d_rows_.data(), FS);
        cuda::gemm<T, float>(blas_, true, false, D, FS, N, 1.0f, dout, D, shared_act_.data(), FS,
                             1.0f, g.shared_w2, FS);
        cuda::swiglu_backward_overwrite<T>(d_h13_.data(), d_rows_.data(), shared_h13_.data(), N, FS,
                                           st);
        swiglu_in_backward<T>(blas_, dx, g.shared_w1, g.shared_w3, d_h13_.data(), x, w.shared_w1,
                              w.shared_w3, N, D, FS);
    }
    // Combine: d_rows_ holds d(ys), then d(xs), (M, D).
    zero(d_gates_.data(), M, st);
    cuda::moe_combine_backward<T>(d_rows_.data(), d_gates_.data(), dout, ys_.data(), gates_.data(),
                                  p, N, K, D, st);
    zero(d_act_.data(), static_cast<std::size_t>(M) * F, st);
    cuda::grouped_matmul_backward<T, float>(blas_, d_act_.data(), g.w2, d_rows_.data(), D,
                                            act_.data(), w.w2, off, E, F, D);
    cuda::swiglu_backward_overwrite<T>(d_h13_.data(), d_act_.data(), h13_.data(), M, F, st);
    zero(d_rows_.data(), static_cast<std::size_t>(M) * D, st);
    cuda::grouped_matmul_backward<T, float>(blas_, d_rows_.data(), g.w1, d_h13_.data(), 2 * F,
                                            xs_.data(), w.w1, off, E, D, F);
    cuda::grouped_matmul_backward<T, float>(blas_, d_rows_.data(), g.w3, d_h13_.data() + F, 2 * F,
                                            xs_.data(), w.w3, off, E, D, F);
    cuda::moe_gather_backward<T>(dx, d_rows_.data(), p, N, K, D, st);
    // Router: the gates carry a gradient (the choice is piecewise constant), and the scores one
    // from the balance loss.
    zero(d_logits_.data(), static_cast<std::size_t>(N) * E, st);
    cuda::router_backward(d_logits_.data(), d_gates_.data(), scores_.data(), experts_.data(), N, E,
                          K, shape_.router, st);
    if (shape_.aux_loss_alpha > 0 && aux_weight != 0.0)
        cuda::moe_aux_loss_backward(d_logits_.data(), aux_f_.data(), scores_.data(), N, E,
                                    last_seq_len_, shape_.aux_loss_alpha, aux_weight,
                                    shape_.router.score, st);
    const T* d_logits = nullptr;
    if constexpr (std::is_same_v<T, float>) {
        d_logits = d_logits_.data();
    } else {
        cuda::cast_to_bf16(d_logits_t_.data(), d_logits_.data(), static_cast<std::size_t>(N) * E,
                           st);
        d_logits = d_logits_t_.data();
    }
    cuda::matmul_backward<T, float>(blas_, dx, g.router, d_logits, x, w.router, N, D, E);
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
    for (int e = 0; e < shape_.n_experts; e++) load[e] = host_offsets_[e + 1] - host_offsets_[e];
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
    return logits_.bytes() + scores_.bytes() + gates_.bytes() + aux_f_.bytes() + seq_loss_.bytes() +
           d_gates_.bytes() + d_logits_.bytes() + d_logits_t_.bytes() + experts_.bytes() +
           offsets_.bytes() + row_token_.bytes() + slot_row_.bytes() + load_.bytes() + xs_.bytes() +
           h13_.bytes() + act_.bytes() + ys_.bytes() + shared_h13_.bytes() + shared_act_.bytes() +
           d_rows_.bytes() + d_h13_.bytes() + d_act_.bytes();
}

template class MoeFfnGpu<float>;
template class MoeFfnGpu<bf16>;

}  // namespace agpt

#endif  // AGPT_HAVE_CUDA
