#pragma once
// Lion, EvoLved Sign Momentum (Chen et al., arXiv 2302.06675; reference: google/automl
// lion/lion_pytorch.py), over every parameter:
//   W *= 1 − lr·wd;  W -= lr·sign(β1·m + (1 − β1)·g);  m = β2·m + (1 − β2)·g
// β1 shapes the step's direction, β2 the momentum that is kept.
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo lion_info();

}  // namespace agpt
