#pragma once
// What the trainer, checkpoints, evaluation and sampling need of a model family, so that one
// training loop drives the agpt transformer (Llama-style) and GPT-2 alike. Each family keeps its
// own explicit forward/backward; this interface adds nothing but the seam.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace agpt {

struct ParamView {
    std::string name;  // the family's own naming ("layers.3.attention.wq.weight", "h.3.ln_1.bias")
    std::size_t offset;  // into the flat buffer
    std::vector<int> shape;
    // embedding | norm | bias | attention | ffn | head; MoE: router, ffn (experts), expert_bias
    // (not trained: the balancing rule sets it). Optimizers route by role.
    std::string role;
    std::size_t numel() const;
};

struct ModelArgs;
class Communicator;

// What a model keeps from forward for backward (`[activation_checkpoint] mode`): every layer's
// activations (none), or only each layer's input, recomputing a layer's forward right before
// its backward (full).
enum class ActivationCheckpoint { none, full };

class LanguageModel {
  public:
    virtual ~LanguageModel() = default;

    virtual const std::vector<ParamView>& param_views() const = 0;
    virtual std::vector<float>& params() = 0;
    virtual std::vector<float>& grads() = 0;
    // The name a view's tensor has in checkpoints and exports (Hugging Face's naming for the
    // family, so a step folder loads into transformers).
    virtual std::string checkpoint_name(const std::string& view_name) const = 0;

    // Tokens the model scores (logits cover [0, vocab_size())).
    virtual int vocab_size() const = 0;
    virtual long num_params() const = 0;
    virtual double flops_per_token(int seq_len) const = 0;
    // The longest sequence the model accepts (learned position embeddings); 0: no limit.
    virtual int max_context() const = 0;

    virtual void init_weights(const std::string& scheme, uint64_t seed) = 0;
    virtual void zero_grad() = 0;
    // tokens and targets (B,T); targets of -1 are not counted. Accumulates into grads() the
    // gradient of grad_scale · Σ loss; returns Σ loss (nats) over counted targets.
    virtual double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                    double grad_scale) = 0;
    virtual double forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) = 0;
    // Logits (B,T,vocab_size()) into out.
    virtual void forward_logits(const int32_t* tokens, int B, int T, float* out) = 0;
    // Logits (vocab_size()) of the last position of one sequence of length T.
    virtual void last_logits(const int32_t* tokens, int T, float* out) = 0;
    virtual std::size_t activation_bytes() const = 0;
    // Called after each optimizer step (MoE: the aux-loss-free expert-bias update).
    virtual void after_optimizer_step() {}

    // Mixture of experts (the agpt family's MoE flavors; nothing elsewhere). Per MoE layer in
    // layer order, the routed assignments per expert that training forwards counted since the
    // last after_optimizer_step.
    virtual std::vector<std::vector<double>> expert_loads() const { return {}; }
    // Sums those loads over comm's ranks (the data-parallel ranks, before after_optimizer_step),
    // so that every rank's expert biases stay identical.
    virtual void sum_expert_loads(Communicator& /*comm*/) {}
    // Σ over MoE layers of the last forward's sequence-level balance loss (aux_loss_alpha > 0;
    // else 0). forward_backward adds its gradient but not its value to the returned loss.
    virtual double moe_aux_loss() const { return 0.0; }

    // The agpt transformer's arguments; nullptr for other families.
    virtual const ModelArgs* agpt_args() const { return nullptr; }
    // The model whose parameter layout (views, tensor-parallel shards) this one has: itself, or
    // a cuda model's CPU twin. Checkpoints gather and slice shards through it.
    virtual const LanguageModel& layout_model() const { return *this; }

    // While set, forward_backward reports each stretch [begin, end) of grads() (in floats) as
    // soon as backward has finished it for this call: descending and contiguous, from the end of
    // the buffer to 0 (the head first, the embedding last), so a data-parallel reducer can start
    // on it while backward goes on. Empty: no reports.
    using GradsReady = std::function<void(std::size_t begin, std::size_t end)>;
    void set_grads_ready(GradsReady callback) { grads_ready_ = std::move(callback); }

  protected:
    void grads_ready(std::size_t begin, std::size_t end) const {
        if (grads_ready_) grads_ready_(begin, end);
    }

  private:
    GradsReady grads_ready_;
};

}  // namespace agpt
