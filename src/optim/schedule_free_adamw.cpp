#include "optim/schedule_free_adamw.h"

#include <algorithm>
#include <cmath>
#include <cstring>
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

// ATen's lerp (fused, from the nearer end).
inline float lerp(float start, float end, float w) {
    return std::abs(w) < 0.5f ? std::fma(w, end - start, start)
                              : std::fma(-(1.0f - w), end - start, end);
}

struct SfCoefficients {
    float b2, omb2, bc2, eps, decay, c, y_coef, lr;
};

// One step over n elements. The decay term is added only when weight_decay != 0, as in the
// reference (0·y would turn an infinite y into NaN).
template <bool kDecay>
void sf_update(float* __restrict y, const float* __restrict g, float* __restrict z,
               float* __restrict v, std::size_t n, const SfCoefficients k) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (std::size_t i = 0; i < n; ++i) {
        const float vs = v[i] * k.b2;
        const float vi = vs + k.omb2 * g[i] * g[i];
        v[i] = vi;
        const float denom = std::sqrt(vi / k.bc2) + k.eps;
        float gn = g[i] / denom;
        if constexpr (kDecay) gn = gn + k.decay * y[i];
        const float yl = lerp(y[i], z[i], k.c);
        y[i] = yl + k.y_coef * gn;
        z[i] = z[i] - k.lr * gn;
    }
}

class ScheduleFreeAdamW final : public Optimizer {
  public:
    ScheduleFreeAdamW(const Hyper& h, std::vector<OptimParam> params)
        : cfg_(schedule_free_adamw_config_from(h)),
          params_(std::move(params)),
          runs_(contiguous_runs(params_)),
          z_(total_numel(params_), 0.0f),
          v_(z_.size(), 0.0f) {}

    const std::string& name() const override { return name_; }
    long steps_taken() const override { return k_; }
    double last_lr() const override { return last_lr_; }
    bool in_eval_mode() const override { return train_mode_ == 0; }

    void step(double lr_factor) override {
        Timer t;
        if (!train_mode_)
            fail(
                "optimizer ScheduleFreeAdamW: step {} called in eval mode (call train_mode() "
                "after validation or checkpointing)",
                k_ + 1);
        check_lr_factor(name_, lr_factor, k_ + 1);
        const long warmup = cfg_.warmup_steps;
        const double sched = k_ < warmup ? static_cast<double>(k_ + 1) / warmup : 1.0;
        const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(k_ + 1));
        const double lr = cfg_.lr * lr_factor * sched;
        lr_max_ = std::max(lr, lr_max_);
        const double weight =
            std::pow(static_cast<double>(k_ + 1), cfg_.r) * std::pow(lr_max_, cfg_.weight_lr_power);
        weight_sum_ += weight;
        const double ckp1 = weight_sum_ != 0.0 ? weight / weight_sum_ : 0.0;

        const float b2 = static_cast<float>(cfg_.beta2),
                    omb2 = static_cast<float>(1.0 - cfg_.beta2);
        const float bc2f = static_cast<float>(bc2);
        const float eps = static_cast<float>(cfg_.eps);
        const float decay = static_cast<float>(cfg_.weight_decay);
        const bool has_decay = cfg_.weight_decay != 0.0;
        const float c = static_cast<float>(ckp1);
        const float y_coef = static_cast<float>(lr * (cfg_.beta1 * (1.0 - ckp1) - 1.0));
        const float lrf = static_cast<float>(lr);
        const bool first = k_ == 0;
        const SfCoefficients coef{b2, omb2, bc2f, eps, decay, c, y_coef, lrf};
        for (const auto& run : runs_) {
            float* y = run.value;
            const float* g = run.grad;
            float* z = z_.data() + run.state_offset;
            float* v = v_.data() + run.state_offset;
            // The reference clones the parameters into z at its first step.
            if (first) std::memcpy(z, y, run.n * sizeof(float));
            if (has_decay)
                sf_update<true>(y, g, z, v, run.n, coef);
            else
                sf_update<false>(y, g, z, v, run.n, coef);
        }
        ++k_;
        last_lr_ = lr;
        timing_ = {t.seconds(), 0.0};
    }

    void eval_mode() override {
        if (!train_mode_) return;
        train_mode_ = 0;
        if (k_ == 0) return;  // no z yet: x = y = the initial parameters
        stash_.resize(z_.size());
        const float w = static_cast<float>(1.0 - 1.0 / cfg_.beta1);
        for (const auto& run : runs_) {
            float* p = run.value;
            float* ys = stash_.data() + run.state_offset;
            const float* z = z_.data() + run.state_offset;
#pragma omp parallel for simd schedule(static) if (run.n > 32768)
            for (std::size_t i = 0; i < run.n; ++i) {
                ys[i] = p[i];
                p[i] = lerp(p[i], z[i], w);
            }
        }
    }

    void train_mode() override {
        if (train_mode_) return;
        train_mode_ = 1;
        if (k_ == 0) return;
        for (const auto& run : runs_)
            std::memcpy(run.value, stash_.data() + run.state_offset, run.n * sizeof(float));
    }

    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        append_scalar(out, "schedulefree.k", &k_);
        append_scalar(out, "schedulefree.train_mode", &train_mode_);
        append_scalar(out, "schedulefree.weight_sum", &weight_sum_);
        append_scalar(out, "schedulefree.lr_max", &lr_max_);
        append_param_state(out, "schedulefree", params_, z_, "z");
        append_param_state(out, "schedulefree", params_, v_, "exp_avg_sq");
        if (!train_mode_ && k_ > 0) {
            stash_.resize(z_.size());
            append_param_state(out, "schedulefree", params_, stash_, "y");
        }
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        append_routing(out, params_, name_);
        return out;
    }

  protected:
    void after_scalars_loaded() override {
        if (train_mode_ != 0 && train_mode_ != 1)
            fail("optimizer ScheduleFreeAdamW: checkpoint mode flag {} is neither 0 nor 1",
                 train_mode_);
    }

  private:
    std::string name_ = "ScheduleFreeAdamW";
    ScheduleFreeAdamWConfig cfg_;
    std::vector<OptimParam> params_;
    std::vector<ParamRun> runs_;
    std::vector<float> z_, v_, stash_;
    long k_ = 0;
    long train_mode_ = 1;
    double weight_sum_ = 0.0;
    double lr_max_ = -1.0;
    double last_lr_ = 0.0;
};

}  // namespace

ScheduleFreeAdamWConfig schedule_free_adamw_config_from(const Hyper& h) {
    ScheduleFreeAdamWConfig c;
    c.lr = h.num("lr");
    c.beta1 = h.num("beta1");
    c.beta2 = h.num("beta2");
    c.eps = h.num("eps");
    c.weight_decay = h.num("weight_decay");
    c.warmup_steps = h.integer("warmup_steps");
    c.r = h.num("r");
    c.weight_lr_power = h.num("weight_lr_power");
    if (!(c.lr >= 0.0)) fail("optimizer (ScheduleFreeAdamW): invalid learning rate {}", c.lr);
    if (!(c.beta1 > 0.0 && c.beta1 < 1.0))
        fail("optimizer (ScheduleFreeAdamW): beta1 must be in (0, 1), got {}", c.beta1);
    if (!(c.beta2 >= 0.0 && c.beta2 < 1.0))
        fail("optimizer (ScheduleFreeAdamW): invalid beta2 {}", c.beta2);
    if (c.warmup_steps < 0) fail("optimizer (ScheduleFreeAdamW): warmup_steps must be >= 0");
    return c;
}

OptimizerInfo schedule_free_adamw_info() {
    OptimizerInfo info;
    info.name = "ScheduleFreeAdamW";
    info.description =
        "AdamW without a schedule: gradients at y, evaluation at the running average x";
    info.paper =
        "Defazio et al., The Road Less Scheduled, arXiv 2405.15682 "
        "(github.com/facebookresearch/schedule_free)";
    info.keys = {
        {"lr", HyperKind::kNumber, 0.0025, "learning rate (use a constant trainer schedule)", {}},
        {"beta1", HyperKind::kNumber, 0.9, "interpolation between z and x", {}},
        {"beta2", HyperKind::kNumber, 0.999, "second-moment EMA coefficient", {}},
        {"eps", HyperKind::kNumber, 1e-8, "added to sqrt(v/bc2)", {}},
        {"weight_decay",
         HyperKind::kNumber,
         0.0,
         "L2 term wd*y added to the normalised gradient",
         {}},
        {"warmup_steps", HyperKind::kInteger, 0.0, "linear warm-up inside the optimizer", {}},
        {"r", HyperKind::kNumber, 0.0, "polynomial weighting power of the average", {}},
        {"weight_lr_power", HyperKind::kNumber, 2.0, "average weights lr_max^power", {}},
    };
    info.factory = [](const Hyper& h, const Hyper&, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new ScheduleFreeAdamW(h, std::move(params)));
    };
    return info;
}

}  // namespace agpt
