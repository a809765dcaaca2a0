#include "optim/spam.h"

#include <algorithm>
#include <cmath>
#include <numbers>
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

double spam_warmup_scale(long c, long warmup_steps) {
    // The reference's CosineDecay(0.99, N): torch's CosineAnnealingLR(T_max = N + 1) evaluated in
    // closed form at epoch c, and 0 (eta_min) from c = N on; the scale is one minus that.
    if (c >= warmup_steps) return 1.0;
    const double dr = 0.99 *
                      (1.0 + std::cos(std::numbers::pi * static_cast<double>(c) /
                                      static_cast<double>(warmup_steps + 1))) /
                      2.0;
    return 1.0 - dr;
}

namespace {

inline float sign(float x) {
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
}

struct SpamCoefficients {
    float b1, omb1, b2, omb2, eps, theta, neg_step, neg_decay;
};

template <bool kClip, bool kDecay>
void spam_update(float* __restrict w, const float* __restrict gr, float* __restrict m,
                 float* __restrict v, std::size_t n, const SpamCoefficients k) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (std::size_t i = 0; i < n; ++i) {
        float mi = m[i];
        float vi = v[i];
        float g = gr[i];
        if constexpr (kClip)
            if (g * g > k.theta * vi) g = sign(g) * std::sqrt(vi * k.theta);
        const float ms = mi * k.b1;
        mi = ms + k.omb1 * g;
        const float vs = vi * k.b2;
        vi = vs + k.omb2 * g * g;
        const float denom = std::sqrt(vi) + k.eps;
        float p = w[i] + k.neg_step * (mi / denom);
        if constexpr (kDecay) p = p + k.neg_decay * p;
        w[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

class Spam final : public Optimizer {
  public:
    Spam(const Hyper& h, std::vector<OptimParam> params)
        : cfg_(spam_config_from(h)),
          params_(std::move(params)),
          runs_(contiguous_runs(params_)),
          m_(total_numel(params_), 0.0f),
          v_(m_.size(), 0.0f),
          warmup_step_(cfg_.warmup_steps + 1) {}  // no warm-up before the first reset

    const std::string& name() const override { return name_; }
    long steps_taken() const override { return step_; }
    double last_lr() const override { return last_lr_; }

    void step(double lr_factor) override {
        Timer timer;
        check_lr_factor(name_, lr_factor, step_ + 1);
        const long t = step_ + 1;  // the reference's total_step + 1
        const double lr = cfg_.lr * lr_factor;
        const double scale = spam_warmup_scale(warmup_step_, cfg_.warmup_steps);
        const long delta_t = cfg_.delta_t, clip_after = cfg_.grad_accu_steps;
        const bool reset = delta_t > 0 && t % delta_t == 0;
        const bool clip =
            cfg_.threshold != 0.0 && t >= clip_after && (delta_t == 0 || t % delta_t >= clip_after);
        double step_size = lr;
        if (cfg_.correct_bias) {
            const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t));
            const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t));
            step_size *= std::sqrt(bc2) / bc1;
        }
        const float b1 = static_cast<float>(cfg_.beta1),
                    omb1 = static_cast<float>(1.0 - cfg_.beta1);
        const float b2 = static_cast<float>(cfg_.beta2),
                    omb2 = static_cast<float>(1.0 - cfg_.beta2);
        const float eps = static_cast<float>(cfg_.eps);
        const float theta = static_cast<float>(cfg_.threshold);
        const float neg_step = static_cast<float>(-step_size * scale);
        const bool decay = cfg_.weight_decay > 0.0;
        const float neg_decay = static_cast<float>(-lr * cfg_.weight_decay);
        const SpamCoefficients k{b1, omb1, b2, omb2, eps, theta, neg_step, neg_decay};
        for (const auto& r : runs_) {
            float* m = m_.data() + r.state_offset;
            float* v = v_.data() + r.state_offset;
            if (reset) {
                std::fill(m, m + r.n, 0.0f);
                std::fill(v, v + r.n, 0.0f);
            }
            // The branches are fixed for the step; instantiating them keeps the loop vectorised.
            if (clip && decay)
                spam_update<true, true>(r.value, r.grad, m, v, r.n, k);
            else if (clip)
                spam_update<true, false>(r.value, r.grad, m, v, r.n, k);
            else if (decay)
                spam_update<false, true>(r.value, r.grad, m, v, r.n, k);
            else
                spam_update<false, false>(r.value, r.grad, m, v, r.n, k);
        }
        ++step_;
        ++warmup_step_;
        if (delta_t > 0 && (step_ + 1) % delta_t == 0) warmup_step_ = 0;
        last_lr_ = lr;
        timing_ = {timer.seconds(), 0.0};
    }

    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        append_scalar(out, "spam.step", &step_);
        append_scalar(out, "spam.warmup_step", &warmup_step_);
        append_param_state(out, "spam", params_, m_, "exp_avg");
        append_param_state(out, "spam", params_, v_, "exp_avg_sq");
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        append_routing(out, params_, name_);
        return out;
    }

  private:
    std::string name_ = "SPAM";
    SpamConfig cfg_;
    std::vector<OptimParam> params_;
    std::vector<ParamRun> runs_;
    std::vector<float> m_, v_;
    long step_ = 0;
    long warmup_step_;  // steps since the last reset (the reference's current_step)
    double last_lr_ = 0.0;
};

}  // namespace

SpamConfig spam_config_from(const Hyper& h) {
    SpamConfig c;
    c.lr = h.num("lr");
    c.beta1 = h.num("beta1");
    c.beta2 = h.num("beta2");
    c.eps = h.num("eps");
    c.weight_decay = h.num("weight_decay");
    c.delta_t = h.integer("delta_t");
    c.warmup_steps = h.integer("warmup_steps");
    c.threshold = h.num("threshold");
    c.grad_accu_steps = h.integer("grad_accu_steps");
    c.correct_bias = h.flag("correct_bias");
    if (!(c.lr >= 0.0)) fail("optimizer (SPAM): invalid learning rate {}", c.lr);
    if (!(c.beta1 >= 0.0 && c.beta1 < 1.0)) fail("optimizer (SPAM): invalid beta1 {}", c.beta1);
    if (!(c.beta2 >= 0.0 && c.beta2 < 1.0)) fail("optimizer (SPAM): invalid beta2 {}", c.beta2);
    if (!(c.eps >= 0.0)) fail("optimizer (SPAM): invalid eps {}", c.eps);
    if (c.delta_t < 0) fail("optimizer (SPAM): delta_t must be >= 0, got {}", c.delta_t);
    if (c.warmup_steps < 0)
        fail("optimizer (SPAM): warmup_steps must be >= 0, got {}", c.warmup_steps);
    if (!(c.threshold >= 0.0)) fail("optimizer (SPAM): threshold must be >= 0");
    return c;
}

OptimizerInfo spam_info() {
    OptimizerInfo info;
    info.name = "SPAM";
    info.description =
        "Adam with spike-aware gradient clipping and periodic momentum reset with cosine warm-up";
    info.paper =
        "Huang et al., SPAM: Spike-Aware Adam with Momentum Reset for Stable LLM Training, "
        "arXiv 2501.06842 (github.com/TianjinYellow/SPAM-Optimizer)";
    info.keys = {
        {"lr", HyperKind::kNumber, 1e-3, "learning rate (times the schedule's factor)", {}},
        {"beta1", HyperKind::kNumber, 0.9, "first-moment EMA coefficient", {}},
        {"beta2", HyperKind::kNumber, 0.999, "second-moment EMA coefficient", {}},
        {"eps", HyperKind::kNumber, 1e-6, "added to sqrt(v)", {}},
        {"weight_decay", HyperKind::kNumber, 0.0, "applied after the update: p -= lr*wd*p", {}},
        {"delta_t", HyperKind::kInteger, 500.0, "momentum reset interval (0: never)", {}},
        {"warmup_steps", HyperKind::kInteger, 150.0, "cosine warm-up length N after a reset", {}},
        {"threshold", HyperKind::kNumber, 5000.0, "spike threshold theta: g^2 > theta*v", {}},
        {"grad_accu_steps",
         HyperKind::kInteger,
         20.0,
         "steps after the start and after each reset before clipping",
         {}},
        {"correct_bias", HyperKind::kBool, 1.0, "Adam bias correction", {}},
    };
    info.factory = [](const Hyper& h, const Hyper&, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new Spam(h, std::move(params)));
    };
    return info;
}

}  // namespace agpt
