#include "optim/ademamix.h"

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

double ademamix_alpha(long t, double alpha, long warmup) {
    if (warmup <= 0 || t >= warmup) return alpha;
    const double a = static_cast<double>(t) / static_cast<double>(warmup);
    return (1.0 - a) * 0.0 + a * alpha;
}

double ademamix_beta3(long t, double beta1, double beta3, long warmup) {
    if (warmup <= 0 || t >= warmup) return beta3;
    auto half_life = [](double beta) { return std::log(0.5) / std::log(beta + 1e-8) - 1.0; };
    auto from_half_life = [](double h) { return std::pow(0.5, 1.0 / (h + 1.0)); };
    const double a = static_cast<double>(t) / static_cast<double>(warmup);
    return from_half_life((1.0 - a) * half_life(beta1) + a * half_life(beta3));
}

namespace {

struct AdEMAMixCoefficients {
    float b1, omb1, b2, omb2, b3, omb3, sqrt_bc2, bc1, alpha, eps, wd, neg_lr;
};

// kFast: β1 ≠ 0 (with β1 = 0 the reference uses g itself and keeps no fast EMA).
template <bool kFast>
void ademamix_update(float* __restrict w, const float* __restrict g, float* __restrict m1,
                     float* __restrict m2, float* __restrict v, std::size_t n,
                     const AdEMAMixCoefficients k) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (std::size_t i = 0; i < n; ++i) {
        float f = g[i];
        if constexpr (kFast) {
            const float s = m1[i] * k.b1;
            f = s + k.omb1 * g[i];
            m1[i] = f;
        }
        const float s2 = m2[i] * k.b3;
        const float slow = s2 + k.omb3 * g[i];
        m2[i] = slow;
        const float s3 = v[i] * k.b2;
        const float vi = s3 + k.omb2 * g[i] * g[i];
        v[i] = vi;
        const float denom = std::sqrt(vi) / k.sqrt_bc2 + k.eps;
        float u = (f / k.bc1 + k.alpha * slow) / denom;
        u = u + k.wd * w[i];
        w[i] = w[i] + k.neg_lr * u;
    }
}

class AdEMAMix final : public Optimizer {
  public:
    AdEMAMix(const Hyper& h, std::vector<OptimParam> params)
        : cfg_(ademamix_config_from(h)),
          params_(std::move(params)),
          runs_(contiguous_runs(params_)),
          m1_(total_numel(params_), 0.0f),
          m2_(m1_.size(), 0.0f),
          v_(m1_.size(), 0.0f) {}

    const std::string& name() const override { return name_; }
    long steps_taken() const override { return step_; }
    double last_lr() const override { return last_lr_; }

    void step(double lr_factor) override {
        Timer timer;
        check_lr_factor(name_, lr_factor, step_ + 1);
        const long t = step_ + 1;
        const double lr = cfg_.lr * lr_factor;
        const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t));
        const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t));
        const double alpha = ademamix_alpha(t, cfg_.alpha, cfg_.alpha_warmup);
        const double beta3 = ademamix_beta3(t, cfg_.beta1, cfg_.beta3, cfg_.beta3_warmup);
        const bool fast = cfg_.beta1 != 0.0;  // β1 = 0: the reference uses g itself
        const float b1 = static_cast<float>(cfg_.beta1),
                    omb1 = static_cast<float>(1.0 - cfg_.beta1);
        const float b2 = static_cast<float>(cfg_.beta2),
                    omb2 = static_cast<float>(1.0 - cfg_.beta2);
        const float b3 = static_cast<float>(beta3), omb3 = static_cast<float>(1.0 - beta3);
        const float sqrt_bc2 = static_cast<float>(std::sqrt(bc2));
        const float bc1f = static_cast<float>(bc1);
        const float alphaf = static_cast<float>(alpha);
        const float eps = static_cast<float>(cfg_.eps);
        const float wd = static_cast<float>(cfg_.weight_decay);
        const float neg_lr = static_cast<float>(-lr);
        const AdEMAMixCoefficients k{b1,       omb1, b2,     omb2, b3, omb3,
                                     sqrt_bc2, bc1f, alphaf, eps,  wd, neg_lr};
        for (const auto& r : runs_) {
            float* m1 = m1_.data() + r.state_offset;
            float* m2 = m2_.data() + r.state_offset;
            float* v = v_.data() + r.state_offset;
            if (fast)
                ademamix_update<true>(r.value, r.grad, m1, m2, v, r.n, k);
            else
                ademamix_update<false>(r.value, r.grad, m1, m2, v, r.n, k);
        }
        step_ = t;
        last_lr_ = lr;
        timing_ = {timer.seconds(), 0.0};
    }

    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        append_scalar(out, "ademamix.step", &step_);
        append_param_state(out, "ademamix", params_, m1_, "exp_avg_fast");
        append_param_state(out, "ademamix", params_, m2_, "exp_avg_slow");
        append_param_state(out, "ademamix", params_, v_, "exp_avg_sq");
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        append_routing(out, params_, name_);
        return out;
    }

  private:
    std::string name_ = "AdEMAMix";
    AdEMAMixConfig cfg_;
    std::vector<OptimParam> params_;
    std::vector<ParamRun> runs_;
    std::vector<float> m1_, m2_, v_;
    long step_ = 0;
    double last_lr_ = 0.0;
};

}  // namespace

AdEMAMixConfig ademamix_config_from(const Hyper& h) {
    AdEMAMixConfig c;
    c.lr = h.num("lr");
    c.beta1 = h.num("beta1");
    c.beta2 = h.num("beta2");
    c.beta3 = h.num("beta3");
    c.alpha = h.num("alpha");
    c.beta3_warmup = h.integer("beta3_warmup");
    c.alpha_warmup = h.integer("alpha_warmup");
    c.eps = h.num("eps");
    c.weight_decay = h.num("weight_decay");
    // The reference's checks.
    if (!(c.lr >= 0.0)) fail("optimizer (AdEMAMix): invalid learning rate {}", c.lr);
    if (!(c.eps >= 0.0)) fail("optimizer (AdEMAMix): invalid eps {}", c.eps);
    for (double b : {c.beta1, c.beta2, c.beta3})
        if (!(b >= 0.0 && b < 1.0)) fail("optimizer (AdEMAMix): invalid beta {}", b);
    if (!(c.weight_decay >= 0.0))
        fail("optimizer (AdEMAMix): invalid weight_decay {}", c.weight_decay);
    if (!(c.alpha >= 0.0)) fail("optimizer (AdEMAMix): invalid alpha {}", c.alpha);
    if (c.beta3_warmup < 0 || c.alpha_warmup < 0)
        fail("optimizer (AdEMAMix): warm-up lengths must be >= 0");
    return c;
}

OptimizerInfo ademamix_info() {
    OptimizerInfo info;
    info.name = "AdEMAMix";
    info.description = "Adam with a second, slow momentum EMA mixed in with weight alpha";
    info.paper =
        "Pagliardini et al., The AdEMAMix Optimizer: Better, Faster, Older, arXiv 2409.03137 "
        "(github.com/apple/ml-ademamix)";
    info.keys = {
        {"lr", HyperKind::kNumber, 1e-3, "learning rate (times the schedule's factor)", {}},
        {"beta1", HyperKind::kNumber, 0.9, "fast EMA coefficient", {}},
        {"beta2", HyperKind::kNumber, 0.999, "second-moment EMA coefficient", {}},
        {"beta3", HyperKind::kNumber, 0.9999, "slow EMA coefficient (after warm-up)", {}},
        {"alpha", HyperKind::kNumber, 2.0, "weight of the slow EMA (after warm-up)", {}},
        {"beta3_warmup", HyperKind::kInteger, 0.0, "steps of the beta3 scheduler (0: none)", {}},
        {"alpha_warmup", HyperKind::kInteger, 0.0, "steps of the alpha scheduler (0: none)", {}},
        {"eps", HyperKind::kNumber, 1e-8, "added to sqrt(v)/sqrt(bc2)", {}},
        {"weight_decay", HyperKind::kNumber, 0.0, "p -= lr*wd*p, inside the update", {}},
    };
    info.factory = [](const Hyper& h, const Hyper&, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new AdEMAMix(h, std::move(params)));
    };
    return info;
}

}  // namespace agpt
