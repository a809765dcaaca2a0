// The shared part of the GPU models (gpu_model_base.h). Compiled into agpt_lib by its source
// glob, so the whole file is empty without the CUDA backend.
#if defined(AGPT_HAVE_CUDA)

#include "model/gpu/gpu_model_base.h"

#include <algorithm>
#include <type_traits>

#include "core/error.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/model_ops.h"
#include "kernels/cuda/softcap.h"

namespace agpt {

using cuda::bf16;

void GpuModel::token_logprobs(const int32_t*, const int32_t*, int, int, double*) {
    fail("token_logprobs: policy-gradient training on cuda runs the agpt family's model only");
}

double GpuModel::forward_backward_weighted(const int32_t*, const int32_t*, const float*, int, int) {
    fail(
        "forward_backward_weighted: policy-gradient training on cuda runs the agpt family's model "
        "only");
}

namespace gpu_detail {

template <typename T>
void linear_backward(cuda::Blas& blas, T* dinp, float* dweight, const T* dout, const T* inp,
                     const T* weight, int M, int K, int N, float* dbias) {
    cuda::gemm<T, T>(blas, false, false, M, K, N, 1.0f, dout, N, weight, K, 0.0f, dinp, K);
    if (dbias)
        cuda::matmul_backward_weight_bias<T>(blas, dweight, dbias, dout, inp, M, K, N);
    else
        cuda::gemm<T, float>(blas, true, false, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
}
template void linear_backward<float>(cuda::Blas&, float*, float*, const float*, const float*,
                                     const float*, int, int, int, float*);
template void linear_backward<bf16>(cuda::Blas&, bf16*, float*, const bf16*, const bf16*,
                                    const bf16*, int, int, int, float*);

void memset_async(void* p, std::size_t bytes, cudaStream_t s) {
    if (bytes > 0) AGPT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, s));
}

void copy_async(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
    if (bytes > 0) AGPT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
}

}  // namespace gpu_detail

using namespace gpu_detail;

GpuModelBase::GpuModelBase(std::vector<ParamView> views, int vocab_size, int max_batch, int max_seq,
                           GpuPrecision precision, cudaStream_t stream)
    : vocab_size_(vocab_size),
      max_batch_(max_batch),
      max_seq_(max_seq),
      precision_(precision),
      blas_(stream) {
    if (max_batch <= 0 || max_seq <= 0)
        fail("model: batch {}×{} must be positive", max_batch, max_seq);
    set_views(std::move(views));
    const cudaStream_t s = blas_.stream();
    const std::size_t N = max_tokens();
    losses_ = cuda::DeviceBuffer<float>(N);
    tokens_ = cuda::DeviceBuffer<int32_t>(N);
    targets_ = cuda::DeviceBuffer<int32_t>(N);
    scalars_ = cuda::DeviceBuffer<double>(2);
    scalars_.fill_bytes(0, s);
    head_chunk_ = lm_head_chunk(N, vocab_size_, precision_ == GpuPrecision::bf16);
    const std::size_t head_bytes =
        precision_ == GpuPrecision::bf16
            ? cuda::lm_head_bf16_logits_scratch_bytes(head_chunk_, vocab_size_)
            : cuda::lm_head_scratch_bytes<float>(head_chunk_, vocab_size_);
    scratch_ = cuda::DeviceBuffer<unsigned char>(
        std::max(head_bytes, cuda::grad_norm_scratch_bytes(n_params_)));
}

GpuModelBase::~GpuModelBase() {
    cudaStreamSynchronize(blas_.stream());  // no throw from a destructor
}

const ParamView& GpuModelBase::view(const std::string& name) const {
    for (const auto& v : views_)
        if (v.name == name) return v;
    fail("model: no parameter named '{}'", name);
}

std::size_t GpuModelBase::state_bytes() const {
    return params_.bytes() + grads_.bytes() + params_bf16_.bytes();
}

std::size_t GpuModelBase::common_activation_bytes() const {
    return scratch_.bytes() + losses_.bytes() + tokens_.bytes() + targets_.bytes();
}

template <typename T>
const T* GpuModelBase::weights() const {
    if constexpr (std::is_same_v<T, float>)
        return params_.data();
    else
        return params_bf16_.data();
}
template const float* GpuModelBase::weights<float>() const;
template const bf16* GpuModelBase::weights<bf16>() const;

void GpuModelBase::params_changed() {
    if (precision_ == GpuPrecision::bf16)
        cuda::cast_to_bf16(params_bf16_.data(), params_.data(), n_params_, blas_.stream());
}

void GpuModelBase::upload_params(const float* host) {
    upload_sync(params_, host, blas_.stream());
    params_changed();
    AGPT_CUDA_CHECK(cudaStreamSynchronize(blas_.stream()));
}

void GpuModelBase::download_params(float* host) const {
    download_sync(params_, host, blas_.stream());
}

void GpuModelBase::download_grads(float* host) const {
    download_sync(grads_, host, blas_.stream());
}

void GpuModelBase::zero_grad() {
    grads_.fill_bytes(0, blas_.stream());
}

void GpuModelBase::set_views(std::vector<ParamView> views) {
    views_ = std::move(views);
    n_params_ = views_.empty() ? 0 : views_.back().offset + views_.back().numel();
    const cudaStream_t s = blas_.stream();
    params_ = cuda::DeviceBuffer<float>(n_params_);
    grads_ = cuda::DeviceBuffer<float>(n_params_);
    params_.fill_bytes(0, s);
    grads_.fill_bytes(0, s);
    if (precision_ == GpuPrecision::bf16) {
        params_bf16_ = cuda::DeviceBuffer<bf16>(n_params_);
        params_bf16_.fill_bytes(0, s);
    }
}

void GpuModelBase::check_batch_shape(int B, int T) const {
    if (B > max_batch_ || T > max_seq_ || B <= 0 || T <= 0)
        fail("model: batch {}×{} exceeds the allocated {}×{}", B, T, max_batch_, max_seq_);
}

void GpuModelBase::upload_batch(const int32_t* tokens, const int32_t* targets, int B, int T) {
    check_batch_shape(B, T);
    const long N = static_cast<long>(B) * T;
    const int V = vocab_size_;
    for (long i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            fail("model: token id {} at position {} is outside the vocabulary [0, {})", tokens[i],
                 i, V);
    if (targets)
        for (long i = 0; i < N; i++)
            if (targets[i] < -1 || targets[i] >= V)
                fail("model: target id {} at position {} is outside the vocabulary [0, {})",
                     targets[i], i, V);
    const cudaStream_t s = blas_.stream();
    // Pageable host memory: the copy is staged before the call returns.
    AGPT_CUDA_CHECK(
        cudaMemcpyAsync(tokens_.data(), tokens, N * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    if (targets)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(targets_.data(), targets, N * sizeof(int32_t),
                                        cudaMemcpyHostToDevice, s));
}

template <typename T>
void GpuModelBase::lm_head(const T* x, T* dx, std::size_t head_weight_offset, int N, int C,
                           double grad_scale, float softcap, const float* row_scale) {
    const cudaStream_t s = blas_.stream();
    if (dx) memset_async(dx, static_cast<std::size_t>(N) * C * sizeof(T), s);
    mark("memset");
    float* dw = dx ? grads_.data() + head_weight_offset : nullptr;
    const T* w = weights<T>() + head_weight_offset;
    if constexpr (std::is_same_v<T, bf16>)
        // bf16 logits, as autocast computes them: half the head's memory traffic.
        cuda::lm_head_cross_entropy_bf16_logits(
            blas_, losses_.data(), dx, dw, x, w, targets_.data(), N, C, vocab_size_,
            static_cast<float>(grad_scale), scratch_.data(), head_chunk_, softcap, row_scale);
    else
        cuda::lm_head_cross_entropy<T>(blas_, losses_.data(), dx, dw, x, w, targets_.data(), N, C,
                                       vocab_size_, static_cast<float>(grad_scale), scratch_.data(),
                                       head_chunk_, softcap, row_scale);
    mark("lm head + cross-entropy");
}
template void GpuModelBase::lm_head<float>(const float*, float*, std::size_t, int, int, double,
                                           float, const float*);
template void GpuModelBase::lm_head<bf16>(const bf16*, bf16*, std::size_t, int, int, double, float,
                                          const float*);

template <typename T>
void GpuModelBase::lm_logits(const T* x, std::size_t head_weight_offset, int N, int C,
                             float* out_device, float softcap) {
    cuda::matmul_forward<T, float>(blas_, out_device, x, weights<T>() + head_weight_offset, N, C,
                                   vocab_size_);
    cuda::softcap_forward(out_device, static_cast<long>(N) * vocab_size_, softcap, blas_.stream());
}
template void GpuModelBase::lm_logits<float>(const float*, std::size_t, int, int, float*, float);
template void GpuModelBase::lm_logits<bf16>(const bf16*, std::size_t, int, int, float*, float);

void GpuModelBase::run_forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                        double grad_scale, const float* row_scale) {
    upload_batch(tokens, targets, B, T);
    mark("token upload");
    forward(B, T, true);
    head(B * T, grad_scale, true, row_scale);
    backward(B, T, grad_scale);
}

void GpuModelBase::run_forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) {
    upload_batch(tokens, targets, B, T);
    forward(B, T, false);
    head(B * T, 0.0, false, nullptr);
}

void GpuModelBase::forward_backward_async(const int32_t* tokens, const int32_t* targets, int B,
                                          int T, double grad_scale) {
    run_forward_backward(tokens, targets, B, T, grad_scale);
    cuda::accumulate_sum(scalars_.data(), losses_.data(), B * T, blas_.stream());
    mark("loss sum");
}

double GpuModelBase::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                      double grad_scale) {
    run_forward_backward(tokens, targets, B, T, grad_scale);
    return cuda::sum_losses(losses_.data(), B * T, blas_.stream());
}

double GpuModelBase::take_loss_sum() {
    const cudaStream_t s = blas_.stream();
    double host = 0.0;
    AGPT_CUDA_CHECK(
        cudaMemcpyAsync(&host, scalars_.data(), sizeof host, cudaMemcpyDeviceToHost, s));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
    memset_async(scalars_.data(), sizeof(double), s);
    return host;
}

double GpuModelBase::forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) {
    run_forward_loss(tokens, targets, B, T);
    return cuda::sum_losses(losses_.data(), B * T, blas_.stream());
}

void GpuModelBase::forward_logits(const int32_t* tokens, int B, int T, float* host_out) {
    upload_batch(tokens, nullptr, B, T);
    const int N = B * T;
    cuda::DeviceBuffer<float> out(static_cast<std::size_t>(N) * vocab_size_);
    forward(B, T, false);
    logits(N, out.data());
    download_sync(out, host_out, blas_.stream());
}

void GpuModelBase::clip_grad_norm_async(double max_norm) {
    cuda::grad_norm_clip(grads_.data(), n_params_, max_norm, scalars_.data() + 1, scratch_.data(),
                         blas_.stream());
}

double GpuModelBase::last_grad_norm() const {
    double host = 0.0;
    AGPT_CUDA_CHECK(cudaMemcpyAsync(&host, scalars_.data() + 1, sizeof host, cudaMemcpyDeviceToHost,
                                    blas_.stream()));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(blas_.stream()));
    return host;
}

double GpuModelBase::clip_grad_norm(double max_norm) {
    clip_grad_norm_async(max_norm);
    return last_grad_norm();
}

}  // namespace agpt

#endif  // AGPT_HAVE_CUDA
