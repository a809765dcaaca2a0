// Checked against torchtitan's torchtitan/components/lr_scheduler.py (pytorch/torchtitan main and
// forks that track it, read for this file), function build_lr_schedulers and its
// linear_warmup_stable_decay:
//   - warmup_steps is clamped to training_steps;
//   - decay_steps = round(training_steps * decay_ratio) when decay_ratio is set (Python's round:
//     ties to even), then clamped so warmup + decay <= training_steps; when decay_ratio is None,
//     decay_steps = training_steps - warmup_steps;
//   - stable_steps = training_steps + 1 - warmup_steps - decay_steps: one virtual step at the end,
//     so the last real step's lr is not 0;
//   - lambda(c) for LambdaLR's 0-based c: c < warmup: (c + 1) / warmup; c < warmup + stable: 1;
//     otherwise progress = (c + 1 - warmup - stable) / decay and linear 1 - progress, sqrt
//     1 - sqrt(progress), cosine 0.5 (1 + cos(pi progress)), mapped to
//     min_lr_factor + (1 - min_lr_factor) adj. min_lr_factor applies to the decay phase only.
// The warm-up divides by warmup_steps, not warmup_steps + 1: the (c + 1) / (warmup + 1) form,
// with stable = steps - warmup - decay and progress / (decay + 1), belongs to older torchtitan
// (e.g. commit 73bb964), before the virtual step was added.
// torchtitan's trainer calls optimizers.step() then lr_schedulers.step(), and LambdaLR evaluates
// lambda(0) when it is built, so training step s (1-based) runs with lambda(s - 1).
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

// Python rounds every operation of the lambda separately; a fused multiply-add in the final
// mapping would differ from torchtitan in the last bit.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace agpt {
namespace {

enum DecayKind { kLinear = 0, kSqrt = 1, kCosine = 2 };

// Python 3's round(): to the nearest integer, ties to even.
long long round_half_even(double x) {
    const double lower = std::floor(x);
    const double diff = x - lower;
    double r = lower;
    if (diff > 0.5 || (diff == 0.5 && std::fmod(lower, 2.0) != 0.0)) r = lower + 1.0;
    return static_cast<long long>(r);
}

}  // namespace

LrSchedule::LrSchedule(const LrScheduleConfig& cfg, int training_steps) {
    if (training_steps < 1)
        fail("lr_scheduler: training steps must be >= 1, got {}", training_steps);
    if (cfg.warmup_steps < 0)
        fail("lr_scheduler: warmup_steps must be >= 0, got {}", cfg.warmup_steps);
    if (std::isnan(cfg.decay_ratio)) fail("lr_scheduler: decay_ratio is NaN");
    if (!(cfg.min_lr_factor >= 0.0 && cfg.min_lr_factor <= 1.0))
        fail("lr_scheduler: min_lr_factor must be in [0, 1], got {}", cfg.min_lr_factor);
    if (cfg.decay_type == "linear") {
        decay_kind_ = kLinear;
    } else if (cfg.decay_type == "sqrt") {
        decay_kind_ = kSqrt;
    } else if (cfg.decay_type == "cosine") {
        decay_kind_ = kCosine;
    } else {
        fail("lr_scheduler: unknown decay_type '{}' (expected linear, sqrt or cosine)",
             cfg.decay_type);
    }
    min_factor_ = cfg.min_lr_factor;

    warmup_ = std::min(cfg.warmup_steps, training_steps);
    if (cfg.decay_ratio >= 0.0) {
        const long long wanted =
            round_half_even(static_cast<double>(training_steps) * cfg.decay_ratio);
        decay_ = static_cast<int>(std::min<long long>(wanted, training_steps - warmup_));
    } else {
        decay_ = training_steps - warmup_;
    }
    stable_ = training_steps + 1 - warmup_ - decay_;
}

double LrSchedule::factor(int step) const {
    if (step < 1) fail("lr_scheduler: steps are 1-based, got {}", step);
    const long long c = static_cast<long long>(step) - 1;  // LambdaLR's last_epoch
    const long long warmup_stable = static_cast<long long>(warmup_) + stable_;
    if (c < warmup_) return static_cast<double>(c + 1) / static_cast<double>(warmup_);
    // torchtitan asserts decay_steps != 0 past the stable phase; that is only reachable after
    // the last training step, where the lr simply stays put.
    if (c < warmup_stable || decay_ == 0) return 1.0;
    const double progress =
        static_cast<double>(c + 1 - warmup_stable) / static_cast<double>(decay_);
    double adj = 0.0;
    switch (decay_kind_) {
        case kLinear:
            adj = 1.0 - progress;
            break;
        case kSqrt:
            adj = 1.0 - std::sqrt(progress);
            break;
        default:
            adj = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
            break;
    }
    return min_factor_ + (1.0 - min_factor_) * adj;
}

}  // namespace agpt
