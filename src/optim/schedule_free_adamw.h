#pragma once
// Schedule-Free AdamW (Defazio et al., arXiv 2405.15682) as in facebookresearch/schedule_free,
// schedulefree/adamw_schedulefree.py, over every parameter. Three sequences: z (the SGD-like
// iterate), x (the weighted average of z, used for evaluation) and y = (1 − β1)·z + β1·x (where
// gradients are taken, held in the parameters during training). With k the 0-based step:
//   lr_k = lr · (k < warmup_steps ? (k+1)/warmup_steps : 1);   lr_max = max(lr_max, lr_k)
//   c = w_k / Σ w,  w_k = (k+1)^r · lr_max^weight_lr_power
//   v = β2·v + (1 − β2)·g²;  ĝ = g / (√(v / (1 − β2^(k+1))) + eps) + wd·y
//   y = lerp(y, z, c) + lr_k·(β1·(1 − c) − 1)·ĝ;   z = z − lr_k·ĝ
// which is x ← (1 − c)·x + c·z and y = (1 − β1)·z + β1·x without storing x.
//
// The trainer switches modes: eval_mode() before validation and checkpoints puts x in the
// parameters; train_mode() puts y back. agpt keeps y while in eval mode and restores it exactly
// (the reference recomputes it from x and z, which moves its last bits), so validating or
// checkpointing does not perturb training, and a checkpoint written in eval mode holds x as the
// parameters plus y in the optimizer state.
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo schedule_free_adamw_info();

struct ScheduleFreeAdamWConfig {
    double lr = 0.0, beta1 = 0.0, beta2 = 0.0, eps = 0.0, weight_decay = 0.0;
    long warmup_steps = 0;
    double r = 0.0, weight_lr_power = 0.0;
};
// The keys of schedule_free_adamw_info() from checked hyper-parameters, validated as the
// reference does.
ScheduleFreeAdamWConfig schedule_free_adamw_config_from(const Hyper& h);

}  // namespace agpt
