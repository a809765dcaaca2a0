#include "optim/muon.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "core/timer.h"
#include "kernels/cpu/newton_schulz.h"
#include "optim/adamw_group.h"
#include "optim/param_state.h"

// Each product and sum is one torch op rounded on its own; the two lerps are fused, as ATen's
// vectorised lerp is (see kernels/cpu/adamw.cpp).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace agpt {
namespace {

// ATen's lerp: a small weight interpolates from the start, a large one from the end.
inline float lerp(float start, float end, float w) {
    return std::abs(w) < 0.5f ? std::fma(w, end - start, start)
                              : std::fma(-(1.0f - w), end - start, end);
}

class Muon final : public Optimizer {
  public:
    Muon(const Hyper& h, const Hyper& adamw, std::vector<OptimParam> params)
        : cfg_(muon_config_from(h)), all_(params) {
        std::vector<OptimParam> rest;
        for (auto& p : params) {
            if (is_hidden_matrix(p))
                hidden_.push_back(p);
            else
                rest.push_back(p);
        }
        buf_.assign(total_numel(hidden_), 0.0f);
        adamw_ = std::make_unique<AdamWGroup>("adamw", adamw_config_from(adamw), std::move(rest));
    }

    const std::string& name() const override { return name_; }
    long steps_taken() const override { return step_; }
    double last_lr() const override { return last_lr_; }

    void step(double lr_factor) override {
        Timer t;
        check_lr_factor(name_, lr_factor, step_ + 1);
        const double lr = cfg_.lr * lr_factor;
        const float decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        const float w_buf = static_cast<float>(1.0 - cfg_.momentum);
        const float w_nest = static_cast<float>(cfg_.momentum);
        std::size_t off = 0;
        for (const auto& p : hidden_) {
            const std::size_t n = p.numel();
            const int A = p.shape[0], B = p.shape[1];
            float* buf = buf_.data() + off;
            off += n;
            update_.resize(n);
            float* u = update_.data();
            const float* g = p.grad;
            if (cfg_.nesterov) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
                for (std::size_t i = 0; i < n; ++i) {
                    const float b = lerp(buf[i], g[i], w_buf);
                    buf[i] = b;
                    u[i] = lerp(g[i], b, w_nest);
                }
            } else {
#pragma omp parallel for simd schedule(static) if (n > 32768)
                for (std::size_t i = 0; i < n; ++i) {
                    const float b = lerp(buf[i], g[i], w_buf);
                    buf[i] = b;
                    u[i] = b;
                }
            }
            orthogonalise(u, A, B);
            const double ratio = cfg_.match_rms_adamw
                                     ? 0.2 * std::sqrt(static_cast<double>(std::max(A, B)))
                                     : std::sqrt(std::max(1.0, static_cast<double>(A) / B));
            const float neg_lr = static_cast<float>(-(lr * ratio));
            float* w = p.value;
#pragma omp parallel for simd schedule(static) if (n > 32768)
            for (std::size_t i = 0; i < n; ++i) {
                const float decayed = w[i] * decay;
                w[i] = decayed + neg_lr * u[i];
            }
        }
        ++step_;
        last_lr_ = lr;
        adamw_->step(lr_factor);
        timing_ = {t.seconds(), 0.0};
    }

    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        append_scalar(out, "muon.step", &step_);
        append_param_state(out, "muon", hidden_, buf_, "momentum_buffer");
        adamw_->append_state(out);
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        for (const auto& p : all_)
            out.push_back({p.name, p.role, p.shape, is_hidden_matrix(p) ? "Muon" : "AdamW"});
        return out;
    }

  private:
    std::string name_ = "Muon";
    MuonConfig cfg_;
    std::vector<OptimParam> all_, hidden_;
    std::vector<float> buf_, update_;
    std::vector<double> update64_;
    cpu::NsScratch<float> scratch_;
    cpu::NsScratch<double> scratch64_;
    std::unique_ptr<AdamWGroup> adamw_;
    long step_ = 0;
    double last_lr_ = 0.0;

    void orthogonalise(float* u, int A, int B) {
        if (cfg_.ns_precision == MuonConfig::NsPrecision::fp64) {
            const std::size_t n = static_cast<std::size_t>(A) * B;
            update64_.assign(u, u + n);
            cpu::newton_schulz<double>(update64_.data(), update64_.data(), A, B, cfg_.coef,
                                       cfg_.ns_steps, cfg_.eps, false, scratch64_);
            for (std::size_t i = 0; i < n; ++i) u[i] = static_cast<float>(update64_[i]);
        } else {
            cpu::newton_schulz<float>(u, u, A, B, cfg_.coef, cfg_.ns_steps, cfg_.eps,
                                      cfg_.ns_precision == MuonConfig::NsPrecision::bf16, scratch_);
        }
    }
};

}  // namespace

MuonConfig muon_config_from(const Hyper& h) {
    MuonConfig c;
    c.lr = h.num("lr");
    c.weight_decay = h.num("weight_decay");
    c.momentum = h.num("momentum");
    c.nesterov = h.flag("nesterov");
    c.ns_steps = static_cast<int>(h.integer("ns_steps"));
    c.eps = h.num("eps");
    c.match_rms_adamw = h.choice("adjust_lr_fn") == "match_rms_adamw";
    c.coef.a = h.num("ns_a");
    c.coef.b = h.num("ns_b");
    c.coef.c = h.num("ns_c");
    const std::string& prec = h.choice("ns_precision");
    c.ns_precision = prec == "bf16"   ? MuonConfig::NsPrecision::bf16
                     : prec == "fp64" ? MuonConfig::NsPrecision::fp64
                                      : MuonConfig::NsPrecision::fp32;
    // torch.optim.Muon's own checks.
    if (!(c.lr >= 0.0)) fail("optimizer (Muon): lr must be >= 0, got {}", c.lr);
    if (!(c.momentum >= 0.0)) fail("optimizer (Muon): momentum must be >= 0, got {}", c.momentum);
    if (!(c.weight_decay >= 0.0))
        fail("optimizer (Muon): weight_decay must be >= 0, got {}", c.weight_decay);
    if (c.ns_steps < 0 || c.ns_steps >= 100)
        fail("optimizer (Muon): ns_steps must be in [0, 100), got {}", c.ns_steps);
    return c;
}

OptimizerInfo muon_info() {
    OptimizerInfo info;
    info.name = "Muon";
    info.description =
        "momentum orthogonalised by Newton-Schulz for hidden matrices (torch.optim.Muon)";
    info.paper =
        "Jordan et al., Muon: An optimizer for hidden layers (kellerjordan.github.io/posts/muon); "
        "Liu et al., Muon is Scalable for LLM Training, arXiv 2502.16982; torch.optim.Muon";
    info.routes_to_adamw = true;
    info.keys = {
        {"lr", HyperKind::kNumber, 1e-3, "learning rate (times the schedule's factor)", {}},
        {"weight_decay", HyperKind::kNumber, 0.1, "decoupled: W *= 1 - lr*wd", {}},
        {"momentum", HyperKind::kNumber, 0.95, "EMA momentum coefficient", {}},
        {"nesterov", HyperKind::kBool, 1.0, "Nesterov: orthogonalise lerp(g, buf, momentum)", {}},
        {"ns_a", HyperKind::kNumber, 3.4445, "Newton-Schulz coefficient a", {}},
        {"ns_b", HyperKind::kNumber, -4.775, "Newton-Schulz coefficient b", {}},
        {"ns_c", HyperKind::kNumber, 2.0315, "Newton-Schulz coefficient c", {}},
        {"ns_steps", HyperKind::kInteger, 5.0, "Newton-Schulz iterations", {}},
        {"eps", HyperKind::kNumber, 1e-7, "lower bound of the norm G is divided by", {}},
        {"adjust_lr_fn",
         HyperKind::kChoice,
         std::string("original"),
         "lr scale: sqrt(max(1,A/B)) or 0.2*sqrt(max(A,B))",
         {"original", "match_rms_adamw"}},
        {"ns_precision",
         HyperKind::kChoice,
         std::string("fp32"),
         "Newton-Schulz arithmetic; bf16 emulates torch",
         {"fp32", "bf16", "fp64"}},
    };
    info.factory = [](const Hyper& h, const Hyper& adamw, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new Muon(h, adamw, std::move(params)));
    };
    return info;
}

}  // namespace agpt
