#pragma once
// Lion, EvoLved Sign Momentum (Chen et al., arXiv 2302.06675; reference: google/automl
// lion/lion_pytorch.py), over every parameter:
//   W *= 1 − lr·wd;  W -= lr·sign(β1·m + (1 − β1)·g);  m = β2·m + (1 − β2)·g
// β1 shapes the step's direction, β2 the momentum that is kept.
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo lion_info();

struct LionConfig {
    double lr = 0.0, beta1 = 0.0, beta2 = 0.0, weight_decay = 0.0;
};
// The keys of lion_info() from checked hyper-parameters, validated as the reference does.
LionConfig lion_config_from(const Hyper& h);

}  // namespace agpt
