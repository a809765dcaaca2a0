#pragma once
// GPT-2 on one CUDA device: the CPU Gpt2 (model/gpt2.h) with the same flat parameter layout and
// names (gpt2_param_views: parameters copy over 1:1 in both directions), forward and backward
// through the kernels of kernels/cuda/ (LayerNorm, the tanh GELU fused with its bias, bias adds,
// learned position embeddings, the shared attention), the LM head tied to wte fused with chunked
// cross-entropy (its gradient accumulates into wte's), clipping; no optimizer state.
//
// Precision: fp32 master weights and gradients always. In bf16 mode the GEMMs, norms, attention
// and the activations use bf16 storage (the bf16 copy of the weights, refreshed by
// params_changed()), with fp32 accumulation, statistics (mean, rstd, lse), bias and norm
// gradients and losses; fp32 mode runs everything in fp32 (parity with the CPU model).
//
// Compiled only with the CUDA backend (AGPT_HAVE_CUDA). Intended use:
//   Gpt2Gpu model(args, B, T, GpuPrecision::bf16);
//   model.upload_params(cpu_model.params().data());
//   model.zero_grad();
//   model.forward_backward_async(tokens, targets, B, T, 1.0 / (B * T));   // per micro-batch
//   model.clip_grad_norm_async(max_norm);
//   ... an optimizer over params_device()/grads_device(), then params_changed() ...
//   double loss_sum = model.take_loss_sum();   // synchronises
#include <vector>

#include "model/gpt2.h"
#include "model/gpu/gpu_model_base.h"

namespace agpt {

class Gpt2Gpu final : public GpuModelBase {
  public:
    // Runs on `stream` (the default stream when null). Allocates every buffer up front:
    // parameters, gradients (fp32), the bf16 weight copy (bf16 mode) and the activation arena
    // for (max_batch, max_seq); max_seq is at most args.max_seq_len (the rows of wpe).
    Gpt2Gpu(const Gpt2Args& args, int max_batch, int max_seq, GpuPrecision precision,
            cudaStream_t stream = nullptr);

    const Gpt2Args& args() const { return args_; }

    // Device bytes of the activations, backward temporaries, head scratch and batch.
    std::size_t activation_bytes() const override;

  private:
    struct LayerOffsets {
        std::size_t ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b,
            fcproj_w, fcproj_b;
    };
    Gpt2Args args_;
    std::vector<LayerOffsets> layers_;
    std::size_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0;
    cuda::DeviceBuffer<unsigned char> arena_;  // saved activations, per layer then final
    cuda::DeviceBuffer<unsigned char> dacts_;  // backward temporaries shared by the layers

    void forward(int B, int T, bool training) override;
    void head(int N, double grad_scale, bool backward, const float* row_scale) override;
    void backward(int B, int T, double grad_scale) override;
    void logits(int N, float* out_device) override;
    template <typename T>
    void forward_impl(int B, int T_len);
    template <typename T>
    void backward_impl(int B, int T_len);
    template <typename T>
    void head_impl(int N, double grad_scale, bool backward, const float* row_scale);
    template <typename T>
    T* final_norm_output();
};

}  // namespace agpt
