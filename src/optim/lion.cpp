#include "optim/lion.h"

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

class Lion final : public Optimizer {
  public:
    Lion(const Hyper& h, std::vector<OptimParam> params)
        : cfg_(lion_config_from(h)),
          params_(std::move(params)),
          runs_(contiguous_runs(params_)),
          m_(total_numel(params_), 0.0f) {}

    const std::string& name() const override { return name_; }
    long steps_taken() const override { return step_; }
    double last_lr() const override { return last_lr_; }

    void step(double lr_factor) override {
        Timer t;
        check_lr_factor(name_, lr_factor, step_ + 1);
        const double lr = cfg_.lr * lr_factor;
        const float decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        const float b1 = static_cast<float>(cfg_.beta1),
                    omb1 = static_cast<float>(1.0 - cfg_.beta1);
        const float b2 = static_cast<float>(cfg_.beta2),
                    omb2 = static_cast<float>(1.0 - cfg_.beta2);
        const float neg_lr = static_cast<float>(-lr);
        for (const auto& r : runs_) {
            float* w = r.value;
            const float* g = r.grad;
            float* m = m_.data() + r.state_offset;
#pragma omp parallel for simd schedule(static) if (r.n > 32768)
            for (std::size_t i = 0; i < r.n; ++i) {
                const float p = w[i] * decay;
                const float a = m[i] * b1;
                const float u = a + g[i] * omb1;
                w[i] = p + neg_lr * sign(u);
                const float c = m[i] * b2;
                m[i] = c + omb2 * g[i];
            }
        }
        ++step_;
        last_lr_ = lr;
        timing_ = {t.seconds(), 0.0};
    }

    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        append_scalar(out, "lion.step", &step_);
        append_param_state(out, "lion", params_, m_, "exp_avg");
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        append_routing(out, params_, name_);
        return out;
    }

  private:
    std::string name_ = "Lion";
    LionConfig cfg_;
    std::vector<OptimParam> params_;
    std::vector<ParamRun> runs_;
    std::vector<float> m_;
    long step_ = 0;
    double last_lr_ = 0.0;
};

}  // namespace

LionConfig lion_config_from(const Hyper& h) {
    LionConfig c;
    c.lr = h.num("lr");
    c.beta1 = h.num("beta1");
    c.beta2 = h.num("beta2");
    c.weight_decay = h.num("weight_decay");
    if (!(c.lr >= 0.0)) fail("optimizer (Lion): invalid learning rate {}", c.lr);
    if (!(c.beta1 >= 0.0 && c.beta1 <= 1.0)) fail("optimizer (Lion): invalid beta1 {}", c.beta1);
    if (!(c.beta2 >= 0.0 && c.beta2 <= 1.0)) fail("optimizer (Lion): invalid beta2 {}", c.beta2);
    return c;
}

OptimizerInfo lion_info() {
    OptimizerInfo info;
    info.name = "Lion";
    info.description = "sign of an interpolated momentum, two betas (update and memory)";
    info.paper =
        "Chen et al., Symbolic Discovery of Optimization Algorithms, arXiv 2302.06675 "
        "(github.com/google/automl, lion/lion_pytorch.py)";
    info.keys = {
        {"lr", HyperKind::kNumber, 1e-4, "learning rate (times the schedule's factor)", {}},
        {"beta1", HyperKind::kNumber, 0.9, "interpolation for the update's sign", {}},
        {"beta2", HyperKind::kNumber, 0.99, "momentum EMA coefficient", {}},
        {"weight_decay", HyperKind::kNumber, 0.0, "decoupled: p *= 1 - lr*wd", {}},
    };
    info.factory = [](const Hyper& h, const Hyper&, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new Lion(h, std::move(params)));
    };
    return info;
}

}  // namespace agpt
