#pragma once
// Optimizers behind one interface: AdamW, Muon, Mano, SophiaG, SPAM, Lion, Schedule-Free AdamW
// and AdEMAMix, each with its reference's semantics and defaults (docs/optimizers.md), plus any
// optimizer a user registers.
//
// An optimizer updates a list of parameters in place. Each parameter is a named view
// (name, role, shape, values, gradient) into the model's flat buffers; the role
// (embedding | norm | attention | ffn | head | bias ...) decides where it goes: matrix optimizers
// (Muon, Mano) take the 2-D hidden weights (role attention or ffn) and hand everything else —
// embeddings, the LM head, norms, biases, whatever their rank — to an inner AdamW configured by
// the `[optimizer.adamw]` keys, as the Muon and Mano references do. Element-wise optimizers take
// every parameter.
//
// All state (moments, Hessian estimates, step counters, reset phases, schedule-free averages)
// is exposed as named tensors, so a checkpoint restores it bit for bit.
//
// Intended use:
//   OptimizerSpec spec;                        // from [optimizer] and [optimizer.adamw]
//   spec.name = "Muon";
//   spec.hyper["lr"] = 0.02;
//   spec.hyper["adjust_lr_fn"] = std::string("match_rms_adamw");
//   auto opt = make_optimizer(spec, optim_params_from(model.param_views(), model.params(),
//                                                     model.grads()));
//   print(routing_table(*opt));                // agpt train --dry-run
//   if (opt->needs_hessian_hook()) opt->set_hessian_hook(...);   // SophiaG, see below
//   for each step s:
//       model.zero_grad(); forward_backward(...); clip(...);
//       opt->step(schedule.factor(s));         // base lr of every group × the schedule factor
//       log(opt->last_timing().update_s / step_time);
//   checkpoint: opt->eval_mode(); save params + opt->state_tensors(); opt->train_mode();
//   resume:     load params; opt->load_state(saved); opt->train_mode();
//   validation: opt->eval_mode(); evaluate; opt->train_mode();
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/safetensors.h"

namespace agpt {

struct ParamView;

// One parameter the optimizer updates: values and gradient are numel() floats, row-major.
struct OptimParam {
    std::string name;  // "layers.3.attention.wq.weight"
    std::string role;  // embedding | norm | attention | ffn | head | bias | ...
    std::vector<int> shape;
    float* value = nullptr;
    float* grad = nullptr;  // read by step(); SophiaG's hook writes its estimate here
    std::size_t numel() const;
};

// Views of a model's parameters (offsets into its flat value and gradient buffers), all but the
// MoE expert biases (role expert_bias), which the balancing rule sets.
std::vector<OptimParam> optim_params_from(const std::vector<ParamView>& views, float* values,
                                          float* grads);

// True for the weights matrix optimizers take: rank 2 and role attention or ffn.
bool is_hidden_matrix(const OptimParam& p);

// ---- hyper-parameters -----------------------------------------------------------------------

// A key's value: numbers (integers and booleans too: 0/1) or text (choices).
using HyperValue = std::variant<double, std::string>;

struct OptimizerSpec {
    std::string name = "AdamW";
    std::map<std::string, HyperValue> hyper;  // [optimizer] keys; unset keys take the defaults
    std::map<std::string, HyperValue> adamw;  // [optimizer.adamw]: the AdamW of routed params
};

enum class HyperKind { kNumber, kInteger, kBool, kChoice };

struct HyperKey {
    std::string key;
    HyperKind kind = HyperKind::kNumber;
    HyperValue default_value;
    std::string help;
    std::vector<std::string> choices;  // kChoice only
};

// A spec's values checked against the keys and completed with their defaults. Booleans accept
// 0/1 and "true"/"false"; integers must be whole numbers.
class Hyper {
  public:
    Hyper(const std::string& where, const std::vector<HyperKey>& keys,
          const std::map<std::string, HyperValue>& given);
    double num(const std::string& key) const;
    long integer(const std::string& key) const;
    bool flag(const std::string& key) const;
    const std::string& choice(const std::string& key) const;
    // The checked value of any key, defaults included.
    const HyperValue& value(const std::string& key) const { return at(key); }

  private:
    std::string where_;
    std::map<std::string, HyperValue> values_;
    const HyperValue& at(const std::string& key) const;
};

// ---- state and routing ----------------------------------------------------------------------

// A named piece of optimizer state; data points into the optimizer's live storage, so writing
// through it (or load_state) restores it.
struct OptimStateTensor {
    std::string name;  // "muon.layers.0.attention.wq.weight.momentum_buffer", "muon.step"
    SafetensorsDtype dtype = SafetensorsDtype::F32;
    std::vector<int64_t> shape;  // {} for a scalar
    void* data = nullptr;
    std::size_t numel() const;
    std::size_t nbytes() const;
};

// A saved tensor handed back to load_state (e.g. read from a safetensors checkpoint).
struct SavedStateTensor {
    SafetensorsDtype dtype = SafetensorsDtype::F32;
    std::vector<int64_t> shape;
    const void* data = nullptr;
};

struct RoutingEntry {
    std::string param;
    std::string role;
    std::vector<int> shape;
    std::string optimizer;  // "Muon", "AdamW", ...
};

// Seconds spent in the last step(): the update itself and, for SophiaG, the Hessian hook (a
// forward/backward the trainer counts as model time, not optimizer time).
struct OptimStepTiming {
    double update_s = 0.0;
    double hook_s = 0.0;
};

// SophiaG's Gauss–Newton–Bartlett estimate, supplied by the trainer. Protocol: when called, the
// hook must (1) zero the gradient buffers, (2) run a forward pass of the current parameters on
// the current batch, (3) sample labels ŷ from the model's own softmax at every position, (4)
// backpropagate the mean cross-entropy against ŷ into the gradient buffers (micro-batches
// accumulated exactly as a training step's, and clipped as a training step's when clipping is
// on — the reference does both). SophiaG then folds grad ⊙ grad into its Hessian EMA. The
// sampling RNG must be derived from (seed, step) so that a resumed run draws the same labels.
// The gradient buffers hold the estimate afterwards; the next training step zeroes them anyway.
using HessianHook = std::function<void()>;

class Optimizer {
  public:
    virtual ~Optimizer() = default;

    virtual const std::string& name() const = 0;
    // One update of every parameter from its gradient. lr_factor multiplies the base learning
    // rate of every group (the schedule's factor for this step).
    virtual void step(double lr_factor) = 0;
    // Completed step() calls.
    virtual long steps_taken() const = 0;
    // The learning rate the main group used in the last step (0 before the first).
    virtual double last_lr() const = 0;

    // Every piece of state, scalars included, as views into live storage. The list may depend on
    // the mode (Schedule-Free keeps its training point while in eval mode).
    virtual std::vector<OptimStateTensor> state_tensors() = 0;
    // Restores exactly what state_tensors() listed when the checkpoint was written; a missing,
    // extra or mis-shaped tensor is an error naming it.
    void load_state(const std::map<std::string, SavedStateTensor>& saved);
    std::size_t state_bytes();

    virtual std::vector<RoutingEntry> describe_routing() const = 0;

    // Parameters for evaluation and checkpoints. Only Schedule-Free AdamW distinguishes them
    // (x for evaluation, y for training); the others ignore both calls.
    virtual void eval_mode() {}
    virtual void train_mode() {}
    virtual bool in_eval_mode() const { return false; }

    // SophiaG asks for a Hessian hook; step() fails without one when an estimate is due.
    virtual bool needs_hessian_hook() const { return false; }
    virtual void set_hessian_hook(HessianHook hook);

    const OptimStepTiming& last_timing() const { return timing_; }

  protected:
    OptimStepTiming timing_;
    // Called by load_state between its two passes, after the scalars listed first have been
    // loaded; an optimizer whose state list depends on them (the mode) adapts here.
    virtual void after_scalars_loaded() {}
};

// ---- registry -------------------------------------------------------------------------------

using OptimizerFactory = std::function<std::unique_ptr<Optimizer>(
    const Hyper& hyper, const Hyper& adamw, std::vector<OptimParam> params)>;

struct OptimizerInfo {
    std::string name;
    std::string description;  // one line
    std::string paper;        // source paper / reference code
    std::vector<HyperKey> keys;
    bool routes_to_adamw = false;  // hidden matrices only; the rest to [optimizer.adamw]
    OptimizerFactory factory;
};

// The built-in optimizers followed by any registered ones, in registration order.
const std::vector<OptimizerInfo>& optimizer_registry();
// Looks a name up (exact, then case-insensitive); unknown names fail listing the known ones.
const OptimizerInfo& optimizer_info(const std::string& name);
// Adds a user optimizer; a name already taken fails.
void register_optimizer(OptimizerInfo info);
// The keys of the AdamW that takes routed parameters ([optimizer.adamw]).
const std::vector<HyperKey>& routed_adamw_keys();

// Validates the spec against the registry and builds the optimizer.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec,
                                          std::vector<OptimParam> params);

// Tensors and parameters each optimizer of a routing takes, by optimizer name.
struct RoutingTotal {
    std::size_t tensors = 0;
    std::size_t parameters = 0;
};
std::map<std::string, RoutingTotal> routing_totals(const Optimizer& opt);

// One line per parameter: name, shape, role, optimizer (for agpt train --dry-run).
std::string routing_table(const Optimizer& opt);
// The registry as text for `agpt optimizers`.
std::string describe_optimizers();

}  // namespace agpt
