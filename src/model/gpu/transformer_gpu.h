#pragma once
// The agpt transformer on one CUDA device: the CPU Transformer's model (model/transformer.h)
// (a GpuModelBase) with the same flat parameter layout and names (parameters copy over 1:1 in both
// directions), forward and backward through the kernels of kernels/cuda/, the fused LM head with
// chunked cross-entropy and global gradient-norm clipping, all on the device; the optimizers step
// it through GpuModel (optim/cuda_optimizer.h).
//
// Precision: fp32 master weights and gradients always. In bf16 mode the GEMMs, norms, attention
// and the activations use bf16 storage (a bf16 copy of the weights, refreshed by upload_params
// and by each optimizer step), with fp32 accumulation, statistics (rstd, lse) and
// losses; fp32 mode runs everything in fp32 (debugging, parity with the CPU model).
// Every architecture switch of the dense model runs here (qk_norm, attn_softcap, final_softcap,
// the ReLU² FFN), and activation checkpointing (ActivationCheckpoint::full: each layer's input is
// kept, its working set recomputed before its backward; same losses and gradients bit for bit).
// MLA attention (MlaGpu) and MoE FFN layers (MoeFfnGpu, from n_dense_layers on) run as in the CPU
// Transformer: the balance loss's gradient is weighted grad_scale·B·T, training forwards count
// the per-expert loads, and update_expert_bias applies the aux-loss-free rule. Under full
// checkpointing, as on the CPU, the layers share one MlaGpu and one set of MoE buffers, and the
// recomputation routes again without counting the loads.
//
// Compiled only with the CUDA backend (AGPT_HAVE_CUDA). Intended use:
//   TransformerGpu model(args, B, T, GpuPrecision::bf16);
//   model.upload_params(cpu_model.params().data());
//   model.zero_grad();
//   model.forward_backward_async(tokens, targets, B, T, 1.0 / (B * T));   // per micro-batch
//   model.clip_grad_norm_async(max_norm);
//   optimizer->step(lr_factor);          // make_device_optimizer(spec, model)
//   double loss_sum = model.take_loss_sum();   // synchronises
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "model/gpu/gpu_model_base.h"
#include "model/gpu/mla_gpu.h"
#include "model/gpu/moe_gpu.h"
#include "model/model_args.h"
#include "model/tensor_parallel.h"
#include "model/transformer.h"

namespace agpt {

class TransformerGpu final : public GpuModelBase {
  public:
    // Runs on `stream` (the default stream when null). Allocates every buffer up front:
    // parameters, gradients (fp32), the bf16 weight copy (bf16 mode) and the activation arena for
    // (max_batch, max_seq), whose size follows `checkpoint` (the CPU Transformer's modes).
    TransformerGpu(const ModelArgs& args, int max_batch, int max_seq, GpuPrecision precision,
                   cudaStream_t stream = nullptr,
                   ActivationCheckpoint checkpoint = ActivationCheckpoint::none);
    ~TransformerGpu() override;  // where LayerOffsets is complete

    const ModelArgs& args() const { return args_; }
    // Expert parallelism over ep's ranks (MoeFfnGpu::set_expert_parallel; ep's collectives take
    // device pointers): the routed-expert tensors shrink to this rank's E/e experts, as the CPU
    // Transformer's, and every rank of ep must run each forward together. Call before the
    // weights are uploaded; parameters and gradients are reallocated (zero).
    void set_expert_parallel(Communicator* ep);
    // Megatron-style tensor parallelism over tp.group (a DEVICE communicator serving this model's
    // stream), as the CPU Transformer's (model/tensor_parallel.h): the same shard layout, views
    // and names (transformer_layout(args, tp)); this rank's heads, KV heads and FFN rows; the
    // row-parallel outputs (wo, w2) and the column-parallel inputs' gradients summed over the
    // group; the vocabulary-parallel embedding and head. The dense agpt flavors only. Call before
    // the weights are uploaded; parameters, gradients and activations are reallocated (zero).
    void set_tensor_parallel(const TensorParallel& tp);
    const TensorParallel& tensor_parallel() const { return tp_; }

    // Per-token log-probabilities and per-token-weighted forward/backward (gpu_model.h): the
    // fused head's per-token losses, and its backward scaled row by row.
    void token_logprobs(const int32_t* tokens, const int32_t* targets, int B, int T,
                        double* host_logprobs) override;
    double forward_backward_weighted(const int32_t* tokens, const int32_t* targets,
                                     const float* weights, int B, int T) override;

    // MoE (GpuModel's). The expert biases are parameters no optimizer trains (the optimizers skip
    // role expert_bias); update_expert_bias applies the CPU's rule to them on the host.
    std::vector<std::vector<double>> expert_loads() const override;
    void update_expert_bias(const std::vector<std::vector<double>>& loads, double coeff) override;
    double moe_aux_loss() const override;

    // Device bytes of the activations, backward temporaries, MLA/MoE buffers, head scratch,
    // batch and (bf16 under tensor parallelism) the fp32 staging of the group's sums.
    std::size_t activation_bytes() const override;

  private:
    struct LayerOffsets;
    ModelArgs args_;
    ActivationCheckpoint checkpoint_;
    std::vector<LayerOffsets> layer_offsets_;
    std::size_t off_tok_ = 0, off_norm_ = 0, off_output_ = 0;

    // The MLA and MoE layers for the precision in use (null where a layer has none; one MLA for
    // all layers and MoE layers sharing their buffers under full checkpointing).
    template <typename T>
    struct Blocks {
        std::vector<std::unique_ptr<MlaGpu<T>>> mla;
        std::vector<std::unique_ptr<MoeFfnGpu<T>>> moe;
    };
    template <typename T>
    Blocks<T>& blocks();
    template <typename T>
    MlaGpu<T>& mla_at(int layer);
    template <typename T>
    MlaWeights<T> mla_weights(int layer) const;
    MlaGrads<float> mla_grads(int layer);
    template <typename T>
    MoeWeights<T> moe_weights(int layer) const;
    MoeGrads<float> moe_grads(int layer);
    std::vector<int> moe_layer_ids() const;
    void find_offsets();  // layer_offsets_ and the embedding/norm/head offsets from views_
    // New views (transformer_layout with tp_ and expert_ranks) and zeroed flat buffers.
    void relayout(int expert_ranks);
    TensorParallel tp_;
    cuda::DeviceBuffer<float> tp_stage_;  // bf16 sums over the TP group go through fp32
    // p (n elements) summed over the TP group, in place (bf16 through tp_stage_, summed in fp32).
    template <typename T>
    void sum_over_tp(T* p, std::size_t n);
    // The residual a row-parallel output is added to: rank 0's is the stream's, the others'
    // none, so that the sum over the group adds it once.
    template <typename T>
    const T* residual_on_this_rank(const T* residual) const {
        return tp_.rank == 0 ? residual : nullptr;
    }
    bool count_load_ = false;  // training forwards count the per-expert loads

    cuda::DeviceBuffer<unsigned char> arena_;  // saved activations, per layer then final
    cuda::DeviceBuffer<unsigned char> dacts_;  // backward temporaries shared by the layers
    cuda::DeviceBuffer<float> rope_cos_, rope_sin_;
    cuda::DeviceBuffer<float> row_weights_;  // forward_backward_weighted's weights
    Blocks<float> blocks_f32_;
    Blocks<cuda::bf16> blocks_bf16_;

    void forward(int B, int T, bool training) override;
    void head(int N, double grad_scale, bool backward, const float* row_scale) override;
    void backward(int B, int T, double grad_scale) override;
    void logits(int N, float* out_device) override;
    template <typename T>
    void forward_impl(int B, int T_len);
    template <typename T>
    void forward_layer(int layer, int B, int T_len, bool recompute);
    template <typename T>
    void backward_layer(int layer, int B, int T_len, double grad_scale);
    template <typename T>
    void head_impl(int N, double grad_scale, bool backward, const float* row_scale);
    template <typename T>
    void backward_impl(int B, int T_len, double grad_scale);
    template <typename T>
    void logits_impl(int N, float* out_device);
};

}  // namespace agpt
