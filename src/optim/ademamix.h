#pragma once
// AdEMAMix (Pagliardini et al., arXiv 2409.03137) as in apple/ml-ademamix, pytorch/ademamix.py,
// over every parameter. With t the 1-based step:
//   m1 = β1·m1 + (1 − β1)·g;  m2 = β3(t)·m2 + (1 − β3(t))·g;  v = β2·v + (1 − β2)·g²
//   W -= lr · ((m1/bc1 + α(t)·m2) / (√v/√bc2 + eps) + wd·W)
// α(t) rises linearly from 0 to alpha over alpha_warmup steps; β3(t) moves from β1 to beta3
// linearly in half-life, f(β) = ln 0.5 / ln(β + 1e-8) − 1, over beta3_warmup steps. A warm-up of
// 0 means none (the reference's None).
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo ademamix_info();

struct AdEMAMixConfig {
    double lr = 0.0, beta1 = 0.0, beta2 = 0.0, beta3 = 0.0, alpha = 0.0;
    long beta3_warmup = 0, alpha_warmup = 0;
    double eps = 0.0, weight_decay = 0.0;
};
// The keys of ademamix_info() from checked hyper-parameters, validated as the reference does.
AdEMAMixConfig ademamix_config_from(const Hyper& h);

// The schedulers, for tests: α and β3 at 1-based step t.
double ademamix_alpha(long t, double alpha, long warmup);
double ademamix_beta3(long t, double beta1, double beta3, long warmup);

}  // namespace agpt
