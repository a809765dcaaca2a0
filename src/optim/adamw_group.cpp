#include "optim/adamw_group.h"

#include <utility>

#include "core/error.h"
#include "core/timer.h"
#include "kernels/cpu/adamw.h"

namespace agpt {

AdamWConfig adamw_config_from(const Hyper& h) {
    AdamWConfig c;
    c.lr = h.num("lr");
    c.beta1 = h.num("beta1");
    c.beta2 = h.num("beta2");
    c.eps = h.num("eps");
    c.weight_decay = h.num("weight_decay");
    AdamW check(c, 0);  // the class holds torch's bounds; constructing it applies them
    return c;
}

AdamWGroup::AdamWGroup(std::string prefix, const AdamWConfig& cfg, std::vector<OptimParam> params)
    : prefix_(std::move(prefix)),
      cfg_(cfg),
      params_(std::move(params)),
      runs_(contiguous_runs(params_)),
      m_(total_numel(params_), 0.0f),
      v_(total_numel(params_), 0.0f) {
    AdamW check(cfg_, 0);
}

void AdamWGroup::step(double lr_factor) {
    check_lr_factor(prefix_, lr_factor, step_ + 1);
    ++step_;
    last_lr_ = cfg_.lr * lr_factor;
    const cpu::AdamWStep s{last_lr_, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay, step_};
    // The update is element-wise, so one call per contiguous run gives the same bits as one call
    // per tensor.
    for (const auto& r : runs_)
        cpu::adamw_update<float>(r.value, r.grad, m_.data() + r.state_offset,
                                 v_.data() + r.state_offset, r.n, s);
}

void AdamWGroup::append_state(std::vector<OptimStateTensor>& out) {
    append_scalar(out, prefix_ + ".step", &step_);
    append_param_state(out, prefix_, params_, m_, "exp_avg");
    append_param_state(out, prefix_, params_, v_, "exp_avg_sq");
}

namespace {

class AdamWOptimizer final : public Optimizer {
  public:
    AdamWOptimizer(const AdamWConfig& cfg, std::vector<OptimParam> params)
        : group_("adamw", cfg, std::move(params)) {}
    const std::string& name() const override { return name_; }
    void step(double lr_factor) override {
        Timer t;
        group_.step(lr_factor);
        timing_ = {t.seconds(), 0.0};
    }
    long steps_taken() const override { return group_.steps_taken(); }
    double last_lr() const override { return group_.last_lr(); }
    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        group_.append_state(out);
        return out;
    }
    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        append_routing(out, group_.params(), name_);
        return out;
    }

  private:
    std::string name_ = "AdamW";
    AdamWGroup group_;
};

std::vector<HyperKey> adamw_keys() {
    // torchtitan's AdamW defaults (the project's AdamWConfig), which the seed trained with.
    const AdamWConfig d;
    return {
        {"lr", HyperKind::kNumber, d.lr, "learning rate (times the schedule's factor)", {}},
        {"beta1", HyperKind::kNumber, d.beta1, "first-moment EMA coefficient", {}},
        {"beta2", HyperKind::kNumber, d.beta2, "second-moment EMA coefficient", {}},
        {"eps", HyperKind::kNumber, d.eps, "added to sqrt(v) after bias correction", {}},
        {"weight_decay", HyperKind::kNumber, d.weight_decay, "decoupled: p *= 1 - lr*wd", {}},
    };
}

}  // namespace

const std::vector<HyperKey>& routed_adamw_keys() {
    static const std::vector<HyperKey> keys = adamw_keys();
    return keys;
}

OptimizerInfo adamw_info() {
    OptimizerInfo info;
    info.name = "AdamW";
    info.description = "Adam with decoupled weight decay, torch.optim.AdamW's arithmetic";
    info.paper = "Loshchilov & Hutter, Decoupled Weight Decay Regularization, arXiv 1711.05101";
    info.keys = adamw_keys();
    info.factory = [](const Hyper& h, const Hyper&, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(
            new AdamWOptimizer(adamw_config_from(h), std::move(params)));
    };
    return info;
}

}  // namespace agpt
