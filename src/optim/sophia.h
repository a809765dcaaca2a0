#pragma once
// SophiaG (Liu et al., arXiv 2305.14342) as in the reference code (github.com/Liuhong99/Sophia,
// sophia.py and train_sophiag.py), over every parameter:
//   step:  W *= 1 − lr·wd;  m = β1·m + (1 − β1)·g;
//          W -= lr · sign(m) · min(|m| / (ρ·bs·h + 1e-15), 1)
//   every hessian_interval steps (after steps k, 2k, ...), the trainer's Hessian hook fills the
//   gradients with the Gauss–Newton–Bartlett estimate ĝ (optimizer.h, HessianHook) and
//   h = β2·h + (1 − β2)·ĝ⊙ĝ.
// While h = 0 the step is decay then −lr·sign(m); where |m| < ρ·bs·h it is −lr·m/(ρ·bs·h).
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo sophia_info();

struct SophiaConfig {
    double lr = 0.0, beta1 = 0.0, beta2 = 0.0, rho = 0.0, weight_decay = 0.0, bs = 0.0;
    long hessian_interval = 1;
};
// The keys of sophia_info() from checked hyper-parameters, validated as the reference does.
SophiaConfig sophia_config_from(const Hyper& h);

}  // namespace agpt
