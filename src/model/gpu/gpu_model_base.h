#pragma once
// What the GPU models (model/gpu/*_gpu.h) share: the flat fp32 parameter and gradient buffers
// with their bf16 copy, the batch upload, the fused LM head with chunked cross-entropy, the
// loss accumulator, clipping, and the helpers their forward/backward passes use (arena
// offsets, the linear layer's backward, stream-ordered copies).
//
// A model derives from GpuModelBase, lays out its parameters (its CPU twin's ParamViews) and
// its activation arena, and implements four passes on the uploaded batch (tokens_, targets_):
// forward (tokens to the final hidden states), head (the losses, and the gradient of the final
// hidden states when backward), backward (from that gradient into grads_) and logits. The
// public GpuModel calls run them in that order.
//
// Compiled only with the CUDA backend (AGPT_HAVE_CUDA).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "model/gpu/gpu_memory.h"
#include "model/gpu/gpu_model.h"

namespace agpt {

namespace gpu_detail {

template <typename T>
T* at(cuda::DeviceBuffer<unsigned char>& buf, std::size_t byte_offset) {
    return reinterpret_cast<T*>(buf.data() + byte_offset);
}

// dinp (M,K) = dout (M,N) · weight (N,K) (overwritten); dweight (N,K, fp32) += doutᵀ · inp; with
// dbias, dbias (N, fp32) += Σ_rows dout (in the weight GEMM's epilogue where cuBLASLt has one).
template <typename T>
void linear_backward(cuda::Blas& blas, T* dinp, float* dweight, const T* dout, const T* inp,
                     const T* weight, int M, int K, int N, float* dbias = nullptr);

void memset_async(void* p, std::size_t bytes, cudaStream_t s);
void copy_async(void* dst, const void* src, std::size_t bytes, cudaStream_t s);

// Host -> device on stream s, complete on return. (DeviceBuffer::upload's cudaMemcpy runs on
// the legacy default stream, which does not order with a non-blocking stream, and may return
// before a pageable copy has landed.)
template <typename T>
void upload_sync(cuda::DeviceBuffer<T>& dst, const T* host, cudaStream_t s) {
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
    if (dst.size() > 0)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(dst.data(), host, dst.bytes(), cudaMemcpyHostToDevice, s));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
}

template <typename T>
void download_sync(const cuda::DeviceBuffer<T>& src, T* host, cudaStream_t s) {
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
    if (src.size() > 0)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(host, src.data(), src.bytes(), cudaMemcpyDeviceToHost, s));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace gpu_detail

class GpuModelBase : public GpuModel {
  public:
    ~GpuModelBase() override;
    GpuModelBase(const GpuModelBase&) = delete;
    GpuModelBase& operator=(const GpuModelBase&) = delete;

    GpuPrecision precision() const override { return precision_; }
    const std::vector<ParamView>& param_views() const override { return views_; }
    const ParamView& view(const std::string& name) const;  // throws Error when unknown
    std::size_t num_params() const override { return n_params_; }
    cudaStream_t stream() const override { return blas_.stream(); }

    float* params_device() override { return params_.data(); }
    float* grads_device() override { return grads_.data(); }
    cuda::bf16* bf16_params_device() override {
        return precision_ == GpuPrecision::bf16 ? params_bf16_.data() : nullptr;
    }
    void params_changed() override;
    void upload_params(const float* host) override;
    void download_params(float* host) const override;
    void download_grads(float* host) const override;
    void zero_grad() override;

    double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                            double grad_scale) override;
    void forward_backward_async(const int32_t* tokens, const int32_t* targets, int B, int T,
                                double grad_scale) override;
    double take_loss_sum() override;
    double forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) override;
    void forward_logits(const int32_t* tokens, int B, int T, float* host_out) override;

    // Global L2 norm of the gradients (before clipping); scales them by
    // max_norm / (norm + 1e-6) when that is below 1 and max_norm > 0 (optim/grad_clip.h).
    // Deterministic. The async version leaves the norm on the device (last_grad_norm).
    double clip_grad_norm(double max_norm) override;
    void clip_grad_norm_async(double max_norm);
    double last_grad_norm() const;  // synchronises

    // Profiling: when set, called with the op's name after each op of forward, head and
    // backward is queued on stream() (agpt_cuda_model_bench --breakdown records an event there).
    using OpHook = std::function<void(const char* op)>;
    void set_op_hook(OpHook hook) { op_hook_ = std::move(hook); }

    // Parameters + gradients + the bf16 copy.
    std::size_t state_bytes() const override;

  protected:
    // views: the CPU twin's layout (tiling [0, num_params) in order); vocab_size: the head's
    // rows, the range tokens and targets must lie in. Allocates the flat buffers, the batch and
    // the head's scratch.
    GpuModelBase(std::vector<ParamView> views, int vocab_size, int max_batch, int max_seq,
                 GpuPrecision precision, cudaStream_t stream);

    // The passes a model implements (see the top of this file). training: the forward of a
    // forward/backward step (not an evaluation's); grad_scale: the step's, for losses a model
    // adds inside its layers; row_scale (device, N) or null: per-token weights on the head's
    // gradient.
    virtual void forward(int B, int T, bool training) = 0;
    virtual void head(int N, double grad_scale, bool backward, const float* row_scale) = 0;
    virtual void backward(int B, int T, double grad_scale) = 0;
    virtual void logits(int N, float* out_device) = 0;

    // The fused LM head over x (N,C): weight = head_weight_offset's (vocab_size, C) rows of the
    // (bf16 copy of the) parameters, losses into losses_; when backward, dx (N,C; zeroed here)
    // and the weight's gradient accumulate. bf16 mode computes bf16 logits, as autocast does.
    // softcap > 0 caps the logits to softcap·tanh(z/softcap); row_scale as head's.
    template <typename T>
    void lm_head(const T* x, T* dx, std::size_t head_weight_offset, int N, int C, double grad_scale,
                 float softcap = 0.0f, const float* row_scale = nullptr);
    template <typename T>
    void lm_logits(const T* x, std::size_t head_weight_offset, int N, int C, float* out_device,
                   float softcap = 0.0f);

    // Upload, forward, head and backward; the losses stay in losses_.
    void run_forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                              double grad_scale, const float* row_scale = nullptr);
    // Upload, forward and head without backward; the losses stay in losses_.
    void run_forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T);
    void check_batch_shape(int B, int T) const;  // fails unless within (max_batch, max_seq)
    // New parameter views (a sharded layout): zeroed flat parameters, gradients and bf16 copy of
    // their size.
    void set_views(std::vector<ParamView> views);
    // Bytes of the head scratch, the losses and the batch (for activation_bytes()).
    std::size_t common_activation_bytes() const;

    // The weights the passes read: fp32 master weights, or the bf16 copy.
    template <typename T>
    const T* weights() const;
    std::size_t max_tokens() const { return static_cast<std::size_t>(max_batch_) * max_seq_; }
    void mark(const char* op) {
        if (op_hook_) op_hook_(op);
    }

    std::vector<ParamView> views_;
    std::size_t n_params_ = 0;
    int vocab_size_, max_batch_, max_seq_;
    GpuPrecision precision_;
    int head_chunk_ = 0;
    OpHook op_hook_;
    cuda::Blas blas_;
    cuda::DeviceBuffer<float> params_, grads_, losses_;
    cuda::DeviceBuffer<cuda::bf16> params_bf16_;
    cuda::DeviceBuffer<unsigned char> scratch_;  // LM-head chunk; grad-norm partials
    cuda::DeviceBuffer<int32_t> tokens_, targets_;
    cuda::DeviceBuffer<double> scalars_;  // [0] loss sum, [1] grad norm

  private:
    void upload_batch(const int32_t* tokens, const int32_t* targets, int B, int T);
};

}  // namespace agpt
