#pragma once
// The agpt transformer (Llama-3 block, design.md) with an explicit forward and backward that
// call the kernel layer. ModelArgs' switches select QK-norm (q_norm/k_norm weights per layer),
// attention-logit and final-logit soft-capping and the ReLU² FFN (w1, w2; no w3). Parameters and
// gradients live in one flat buffer each; every tensor is a named view into them. Activations for
// backward live in an arena sized for (max_batch, max_seq): every layer's (ActivationCheckpoint::
// none) or each layer's input plus one layer's working set, the layer's forward recomputed right
// before its backward (full; losses and gradients bit-identical to none).
//
// Intended use:
//   Transformer model(args, B, T);
//   model.init_weights("agpt", seed);
//   model.zero_grad();
//   double loss_sum = model.forward_backward(tokens, targets, B, T, 1.0 / (B * T));
//   ... optimizer over model.params() / model.grads() ...
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/language_model.h"
#include "model/mla.h"
#include "model/model_args.h"
#include "model/moe.h"
#include "model/tensor_parallel.h"

namespace agpt {

class Communicator;

// The MLA and MoE layer shapes of a model's args.
MlaShape mla_shape_of(const ModelArgs& args);
MoeShape moe_shape_of(const ModelArgs& args);

// The flat parameter layout of the model for these args, in buffer order: each tensor's view
// (name, offset, shape, role) and where it sits in the full tensor. Under tensor parallelism the
// views are rank tp.rank's shards; over expert_ranks > 1 the routed-expert tensors hold
// n_experts / expert_ranks experts. Transformer and TransformerGpu both lay out their buffers
// with it, so parameters, gradients and optimizer state copy over 1:1.
struct TransformerLayout {
    std::vector<ParamView> views;
    std::vector<ShardSpec> shards;
};
TransformerLayout transformer_layout(const ModelArgs& args, const TensorParallel& tp = {},
                                     int expert_ranks = 1);

class Transformer final : public LanguageModel {
  public:
    // tp.degree > 1: this rank's shards only (model/tensor_parallel.h); dense models only.
    Transformer(const ModelArgs& args, int max_batch, int max_seq,
                ActivationCheckpoint checkpoint = ActivationCheckpoint::none,
                TensorParallel tp = {});

    const ModelArgs& args() const { return args_; }
    const TensorParallel& tensor_parallel() const { return tp_; }
    // Where each view (same order as param_views()) sits in the full tensor.
    const std::vector<ShardSpec>& shards() const { return shards_; }
    const std::vector<ParamView>& param_views() const override { return views_; }
    const ParamView& view(const std::string& name) const;  // throws Error when unknown
    std::vector<float>& params() override { return params_; }
    std::vector<float>& grads() override { return grads_; }
    float* param(const std::string& name) { return params_.data() + view(name).offset; }
    float* grad(const std::string& name) { return grads_.data() + view(name).offset; }

    std::string checkpoint_name(const std::string& view_name) const override;
    int vocab_size() const override { return args_.vocab_size; }
    long num_params() const override { return args_.num_params(); }
    double flops_per_token(int seq_len) const override { return args_.flops_per_token(seq_len); }
    int max_context() const override { return 0; }
    const ModelArgs* agpt_args() const override { return &args_; }

    // scheme: "agpt" or "torchtitan" (design.md).
    void init_weights(const std::string& scheme, uint64_t seed) override;
    void zero_grad() override;

    // tokens and targets (B,T); targets of -1 are not counted. Runs forward and backward and
    // accumulates into grads() the gradient of grad_scale · Σ loss. Returns Σ loss (nats) over
    // counted targets.
    double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                            double grad_scale) override;
    // Forward only: Σ loss over counted targets.
    double forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) override;
    // Forward only: logits (B,T,V) into out (soft-capped when final_softcap > 0).
    void forward_logits(const int32_t* tokens, int B, int T, float* out) override;
    // Logits (V) of the last position of one sequence of length T (for sampling).
    void last_logits(const int32_t* tokens, int T, float* out) override;

    // Per-token log-probabilities for policy-gradient fine-tuning (rl/grpo.h). Forward only:
    // logprobs (B·T) receives log p(targets[i]), 0 where targets[i] is -1.
    void token_logprobs(const int32_t* tokens, const int32_t* targets, int B, int T,
                        double* logprobs);
    // Forward and backward accumulating into grads() the gradient of Σ_i weights[i]·(−log
    // p(targets[i])) over counted targets; weights (B·T). Returns Σ −log p(targets[i]).
    double forward_backward_weighted(const int32_t* tokens, const int32_t* targets,
                                     const float* weights, int B, int T);

    // Bytes held by activations and scratch (for reporting).
    std::size_t activation_bytes() const override;

    // MoE layers (empty for a dense model), in layer order, and the routed assignments per expert
    // each has counted since the last update_expert_bias() (training forwards only). Under full
    // activation checkpointing the layers share their buffers, so a layer's last-forward routing
    // (experts(), gates(), scores(), last_load()) is that of the MoE layer run last.
    std::vector<int> moe_layer_ids() const;
    const MoeFfn<float>& moe_layer(int layer) const;
    // Aux-loss-free balancing (DeepSeek-V3): bias += coeff·sign(mean load − load), centred, per
    // MoE layer, from the load counted since the last call; then resets the counts. coeff 0 only
    // resets them.
    void update_expert_bias(double coeff);
    // Expert parallelism over ep's ranks (see MoeFfn::set_expert_parallel): the routed-expert
    // tensors shrink to this rank's E/e experts and every rank of ep must run each forward
    // together. Call before init_weights; parameters and gradients are reallocated.
    void set_expert_parallel(Communicator* ep);
    // Whether a view holds this rank's shard of the routed experts (set_expert_parallel).
    bool is_expert_shard(const ParamView& v) const;
    // Sums every MoE layer's counted load over comm's ranks (the data-parallel ranks, before
    // update_expert_bias), so that the biases stay identical on every rank.
    void sum_expert_loads(Communicator& comm) override;
    void after_optimizer_step() override { update_expert_bias(args_.load_balance_coeff); }
    // Every MoE layer's tokens_per_expert(), in layer order.
    std::vector<std::vector<double>> expert_loads() const override;
    // Σ over MoE layers of the last forward's sequence-level balance loss (aux_loss_alpha > 0;
    // else 0). forward_backward adds its gradient, weighted as grad_scale·B·T (so that with
    // grad_scale = 1/(B·T) the objective is mean cross-entropy + this loss); it is not part of
    // the returned cross-entropy.
    double moe_aux_loss() const override;

    // This rank's share of the sharded widths (all of them under TP = 1).
    struct Widths {
        int heads, kv_heads, ffn, ffn_in, qkv, vocab_first, vocab_rows;
    };

  private:
    ModelArgs args_;
    int max_batch_, max_seq_;
    ActivationCheckpoint checkpoint_;
    TensorParallel tp_;
    Widths w_;
    std::vector<ParamView> views_;
    std::vector<ShardSpec> shards_;
    // TP with QK-norm: one backward's q/k-norm weight gradients, summed over the group before
    // they are accumulated.
    std::vector<float> qk_norm_grads_;
    std::vector<float> params_, grads_;
    // (the arena and layer offsets are defined in transformer.cpp)
    struct Arena;
    std::vector<float> acts_;
    std::vector<float> dacts_;
    std::vector<float> scratch_;
    std::vector<float> rope_cos_, rope_sin_;
    // MLA models only: per layer, or one shared by all layers under checkpointing (mla_at).
    std::vector<std::unique_ptr<Mla<float>>> mla_;
    // Per layer, null for dense layers; under checkpointing all share one layer's buffers.
    std::vector<std::unique_ptr<MoeFfn<float>>> moe_;
    Mla<float>& mla_at(int layer) { return *mla_[mla_.size() == 1 ? 0 : layer]; }
    bool count_load_ = false;
    Communicator* expert_parallel_ = nullptr;
    MlaWeights<float> mla_weights(int layer);
    MlaGrads<float> mla_grads(int layer);
    MoeWeights<float> moe_weights(int layer);
    MoeGrads<float> moe_grads(int layer);
    void build_views();
    void forward(const int32_t* tokens, int B, int T);
    // One layer's forward: reads layer_input(layer), saves what backward_layer needs and writes
    // layer_input(layer + 1). recompute: the output is already saved (checkpointing), only the
    // working set is rebuilt.
    void forward_layer(int layer, int B, int T, bool recompute = false);
    // One layer's backward after its forward: turns the residual gradient in dacts_ (w.r.t.
    // layer_input(layer + 1)) into the gradient w.r.t. layer_input(layer) and accumulates the
    // layer's parameter gradients.
    void backward_layer(int layer, int B, int T, double grad_scale);
    // The residual stream entering `layer` (N, D); layer n_layers: after the last layer.
    float* layer_input(int layer);
    // Start of one layer's saved activations (offsets: LayerActs in transformer.cpp).
    float* layer_saved(int layer);
    // The final norm's output (N, D), followed by its rstd (N).
    float* final_norm_out();
    double head_loss(const int32_t* targets, int B, int T, double grad_scale, bool backward);
    // Soft-capped logits (N, V) of the final hidden states x (N, dim), gathered over TP.
    void head_logits(const float* x, int N, float* out);
    // Sums n values over the TP group (no-op without TP).
    void sum_over_tp(float* p, std::size_t n);
    // Row-parallel wo and w2 leave partial sums on each TP rank: the residual enters on rank 0
    // only (zeros elsewhere), and sum_over_tp completes the output.
    void start_residual(float* out, const float* residual, std::size_t n);
    // Per-row weights and per-row losses of the next head_loss (token_logprobs and
    // forward_backward_weighted set them around a call).
    const float* head_row_scale_ = nullptr;
    double* head_row_loss_ = nullptr;
};

}  // namespace agpt
