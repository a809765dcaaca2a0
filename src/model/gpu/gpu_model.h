#pragma once
// What every model on one CUDA device offers the layers above it (train/cuda_training's
// LanguageModel adapter, the device optimizers, data parallelism over NCCL): a flat fp32
// parameter buffer laid out like the CPU twin's (the same ParamViews, so parameters and
// checkpoints copy over 1:1), a flat fp32 gradient buffer of the same layout, a bf16 copy of the
// parameters in bf16 mode, forward/backward on the device and gradient clipping.
//
// Whoever changes params_device() (an optimizer step) calls params_changed() afterwards, which
// rewrites the bf16 copy in bf16 mode; an optimizer may instead write bf16_params_device() itself
// in the same pass and skip that.
//
// Compiled only with the CUDA backend (AGPT_HAVE_CUDA).
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/cuda/device.h"
#include "model/gpu/gpu_memory.h"
#include "model/language_model.h"

namespace agpt {

const char* gpu_precision_name(GpuPrecision p);  // "bfloat16" | "float32"

class GpuModel {
  public:
    virtual ~GpuModel() = default;

    virtual GpuPrecision precision() const = 0;
    virtual const std::vector<ParamView>& param_views() const = 0;
    virtual std::size_t num_params() const = 0;
    virtual cudaStream_t stream() const = 0;

    // Device pointers to the flat buffers (num_params() values each); bf16_params_device() is
    // null in fp32 mode.
    virtual float* params_device() = 0;
    virtual float* grads_device() = 0;
    virtual cuda::bf16* bf16_params_device() = 0;
    // Queues the refresh of whatever derives from params_device() (the bf16 copy).
    virtual void params_changed() = 0;

    // Host copies of the flat fp32 buffers. upload_params also refreshes the bf16 copy; all three
    // synchronise the stream.
    virtual void upload_params(const float* host) = 0;
    virtual void download_params(float* host) const = 0;
    virtual void download_grads(float* host) const = 0;

    virtual void zero_grad() = 0;

    // tokens, targets: host arrays (B,T); targets of -1 are not counted. Forward and backward;
    // accumulates into the gradients the gradient of grad_scale · Σ loss. The async version adds
    // Σ loss to a device accumulator (take_loss_sum) and does not synchronise.
    virtual double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                    double grad_scale) = 0;
    virtual void forward_backward_async(const int32_t* tokens, const int32_t* targets, int B, int T,
                                        double grad_scale) = 0;
    // Σ loss accumulated by forward_backward_async since the last call; synchronises.
    virtual double take_loss_sum() = 0;
    // Forward only: Σ loss over counted targets.
    virtual double forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) = 0;
    // Forward only: logits (B,T,V) as fp32 into a host array.
    virtual void forward_logits(const int32_t* tokens, int B, int T, float* host_out) = 0;
    // Policy-gradient training (rl/grpo.h), the CPU Transformer's methods of the same names; the
    // agpt family's model has them (sft and rl run that family only), the others fail.
    // Forward only: log p(targets[i]) per token into a host array of B·T (0 where targets[i] is
    // -1); synchronises.
    virtual void token_logprobs(const int32_t* tokens, const int32_t* targets, int B, int T,
                                double* host_logprobs);
    // Forward and backward accumulating the gradient of Σ_i weights[i]·(−log p(targets[i]));
    // weights: host array of B·T. Returns Σ −log p(targets[i]) over counted targets.
    virtual double forward_backward_weighted(const int32_t* tokens, const int32_t* targets,
                                             const float* weights, int B, int T);

    // Global L2 norm of the gradients before clipping (optim/grad_clip.h's rule); synchronises.
    virtual double clip_grad_norm(double max_norm) = 0;

    // Mixture of experts (nothing for dense models). Per MoE layer in layer order, the routed
    // assignments per expert that training forwards counted since the last update_expert_bias
    // (host copies; synchronises).
    virtual std::vector<std::vector<double>> expert_loads() const { return {}; }
    // Each MoE layer's aux-loss-free bias step (model/moe.h's update_expert_bias) from `loads`
    // (expert_loads(), summed over the data-parallel ranks), then resets the counts.
    virtual void update_expert_bias(const std::vector<std::vector<double>>& /*loads*/,
                                    double /*coeff*/) {}
    // Σ over MoE layers of the last forward's sequence-level balance loss; synchronises.
    virtual double moe_aux_loss() const { return 0.0; }

    // Device bytes held: parameters + gradients + weight copy (+ optimizer state a model keeps),
    // and activations + backward temporaries + head scratch.
    virtual std::size_t state_bytes() const = 0;
    virtual std::size_t activation_bytes() const = 0;

    // While set, backward reports each stretch [begin, end) of grads_device() (in floats) once
    // its gradient kernels are queued on stream(): descending and contiguous from the end of the
    // buffer to 0, the head first and the embedding last (LanguageModel::set_grads_ready's
    // order), so that a data-parallel reducer queues each bucket's sum behind them on its own
    // stream while the rest of backward runs. Empty: no reports.
    using GradsReady = LanguageModel::GradsReady;
    void set_grads_ready(GradsReady callback) { grads_ready_ = std::move(callback); }

  protected:
    void grads_ready(std::size_t begin, std::size_t end) const {
        if (grads_ready_) grads_ready_(begin, end);
    }

  private:
    GradsReady grads_ready_;
};

}  // namespace agpt
