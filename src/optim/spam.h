#pragma once
// SPAM, Spike-Aware Adam with Momentum Reset (Huang et al., arXiv 2501.06842), as in the
// reference code (github.com/TianjinYellow/SPAM-Optimizer, SPAM.py), over every parameter. With
// t the 1-based step:
//   - momentum reset: at t ≡ 0 (mod ΔT) both moments are zeroed before the update, and the
//     update is scaled by a cosine warm-up 1 − 0.99·(1 + cos(π·c/(N+1)))/2 over the next N steps
//     (c = 0, 1, ..., N−1; 1 from c = N on), N = warmup_steps = 150;
//   - spike-aware clipping: once t ≥ grad_accu_steps and t mod ΔT ≥ grad_accu_steps, entries with
//     g² > θ·v (v before this step's update) are replaced by sign(g)·√(θ·v);
//   - then Adam: m = β1·m + (1 − β1)·g, v = β2·v + (1 − β2)·g², W -= lr·scale·√bc2/bc1 ·
//     m/(√v + eps), and weight decay applied after the update: W -= lr·wd·W.
// Bias corrections count every step since the start (a reset does not restart them), as in the
// reference. delta_t = 0 disables resets.
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo spam_info();

struct SpamConfig {
    double lr = 0.0, beta1 = 0.0, beta2 = 0.0, eps = 0.0, weight_decay = 0.0;
    long delta_t = 0, warmup_steps = 0;
    double threshold = 0.0;
    long grad_accu_steps = 0;  // no spike clipping before this step (and after each reset)
    bool correct_bias = true;
};
// The keys of spam_info() from checked hyper-parameters, validated as the reference does.
SpamConfig spam_config_from(const Hyper& h);

// The update scale c steps after a reset (c ≥ N: 1).
double spam_warmup_scale(long c, long warmup_steps);

}  // namespace agpt
