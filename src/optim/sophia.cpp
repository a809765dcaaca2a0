#include "optim/sophia.h"

#include <cmath>
#include <utility>

#include "core/error.h"
#include "core/timer.h"
#include "optim/param_state.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace agpt {
namespace {

inline float sign(float x) {
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
}

class SophiaG final : public Optimizer {
  public:
    SophiaG(const Hyper& h, std::vector<OptimParam> params)
        : cfg_(sophia_config_from(h)),
          params_(std::move(params)),
          runs_(contiguous_runs(params_)),
          m_(total_numel(params_), 0.0f),
          h_(m_.size(), 0.0f) {}

    const std::string& name() const override { return name_; }
    long steps_taken() const override { return step_; }
    double last_lr() const override { return last_lr_; }
    bool needs_hessian_hook() const override { return true; }
    void set_hessian_hook(HessianHook hook) override { hook_ = std::move(hook); }

    void step(double lr_factor) override {
        Timer t;
        check_lr_factor(name_, lr_factor, step_ + 1);
        const bool hessian_due = (step_ + 1) % cfg_.hessian_interval == 0;
        if (hessian_due && !hook_)
            fail(
                "optimizer SophiaG: step {} needs a Hessian estimate but no hook is set "
                "(set_hessian_hook)",
                step_ + 1);
        const double lr = cfg_.lr * lr_factor;
        const float decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        const float b1 = static_cast<float>(cfg_.beta1);
        const float one_minus_b1 = static_cast<float>(1.0 - cfg_.beta1);
        const float rho_bs = static_cast<float>(cfg_.rho * cfg_.bs);  // Python folds ρ·bs first
        const float neg_lr = static_cast<float>(-lr);
        for (const auto& r : runs_) {
            float* w = r.value;
            const float* g = r.grad;
            float* m = m_.data() + r.state_offset;
            const float* h = h_.data() + r.state_offset;
#pragma omp parallel for simd schedule(static) if (r.n > 32768)
            for (std::size_t i = 0; i < r.n; ++i) {
                const float p = w[i] * decay;
                const float scaled = m[i] * b1;
                const float mi = scaled + one_minus_b1 * g[i];
                m[i] = mi;
                const float hb = rho_bs * h[i];
                const float q = std::abs(mi) / (hb + 1e-15f);
                const float ratio = q > 1.0f ? 1.0f : q;  // clamp(max=1) keeps NaN, as torch
                w[i] = p + neg_lr * (sign(mi) * ratio);
            }
        }
        ++step_;
        last_lr_ = lr;
        double hook_s = 0.0;
        if (hessian_due) {
            Timer th;
            hook_();
            hook_s = th.seconds();
            update_hessian();
        }
        timing_ = {t.seconds() - hook_s, hook_s};
    }

    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        append_scalar(out, "sophiag.step", &step_);
        append_param_state(out, "sophiag", params_, m_, "exp_avg");
        append_param_state(out, "sophiag", params_, h_, "hessian");
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        append_routing(out, params_, name_);
        return out;
    }

  private:
    std::string name_ = "SophiaG";
    SophiaConfig cfg_;
    std::vector<OptimParam> params_;
    std::vector<ParamRun> runs_;
    std::vector<float> m_, h_;
    HessianHook hook_;
    long step_ = 0;
    double last_lr_ = 0.0;

    void update_hessian() {
        const float b2 = static_cast<float>(cfg_.beta2);
        const float one_minus_b2 = static_cast<float>(1.0 - cfg_.beta2);
        for (const auto& r : runs_) {
            const float* g = r.grad;
            float* h = h_.data() + r.state_offset;
#pragma omp parallel for simd schedule(static) if (r.n > 32768)
            for (std::size_t i = 0; i < r.n; ++i) {
                const float scaled = h[i] * b2;
                h[i] = scaled + one_minus_b2 * g[i] * g[i];
            }
        }
    }
};

}  // namespace

SophiaConfig sophia_config_from(const Hyper& h) {
    SophiaConfig c;
    c.lr = h.num("lr");
    c.beta1 = h.num("beta1");
    c.beta2 = h.num("beta2");
    c.rho = h.num("rho");
    c.weight_decay = h.num("weight_decay");
    c.bs = h.num("bs");
    c.hessian_interval = h.integer("hessian_interval");
    // The reference's checks.
    if (!(c.lr >= 0.0)) fail("optimizer (SophiaG): invalid learning rate {}", c.lr);
    if (!(c.beta1 >= 0.0 && c.beta1 < 1.0)) fail("optimizer (SophiaG): invalid beta1 {}", c.beta1);
    if (!(c.beta2 >= 0.0 && c.beta2 < 1.0)) fail("optimizer (SophiaG): invalid beta2 {}", c.beta2);
    if (!(c.rho >= 0.0)) fail("optimizer (SophiaG): invalid rho {}", c.rho);
    if (!(c.weight_decay >= 0.0))
        fail("optimizer (SophiaG): invalid weight_decay {}", c.weight_decay);
    if (!(c.bs > 0.0)) fail("optimizer (SophiaG): bs must be > 0, got {}", c.bs);
    if (c.hessian_interval < 1)
        fail("optimizer (SophiaG): hessian_interval must be >= 1, got {}", c.hessian_interval);
    return c;
}

OptimizerInfo sophia_info() {
    OptimizerInfo info;
    info.name = "SophiaG";
    info.description =
        "clipped diagonal-Newton step with a Gauss-Newton-Bartlett Hessian estimate every k steps";
    info.paper =
        "Liu et al., Sophia: A Scalable Stochastic Second-order Optimizer for Language Model "
        "Pre-training, arXiv 2305.14342 (github.com/Liuhong99/Sophia)";
    info.keys = {
        {"lr", HyperKind::kNumber, 1e-4, "learning rate (times the schedule's factor)", {}},
        {"beta1", HyperKind::kNumber, 0.965, "momentum EMA coefficient", {}},
        {"beta2", HyperKind::kNumber, 0.99, "Hessian EMA coefficient", {}},
        {"rho", HyperKind::kNumber, 0.04, "clipping scale rho", {}},
        {"weight_decay", HyperKind::kNumber, 0.1, "decoupled: p *= 1 - lr*wd", {}},
        {"bs", HyperKind::kNumber, 5120.0, "batch-size factor in the denominator rho*bs*h", {}},
        {"hessian_interval",
         HyperKind::kInteger,
         10.0,
         "steps between Hessian estimates (after steps k, 2k, ...)",
         {}},
    };
    info.factory = [](const Hyper& h, const Hyper&, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new SophiaG(h, std::move(params)));
    };
    return info;
}

}  // namespace agpt
