#pragma once
// AdamW (torch.optim.AdamW, through the existing kernel of optim/adamw.h) behind the Optimizer
// interface, and AdamWGroup, the same update over any subset of parameters: the matrix
// optimizers hand it the embeddings, LM head, norms and biases.
#include <memory>
#include <string>
#include <vector>

#include "optim/adamw.h"
#include "optim/optimizer.h"
#include "optim/param_state.h"

namespace agpt {

// lr, beta1, beta2, eps, weight_decay from checked hyper-parameters (validated as AdamW does).
AdamWConfig adamw_config_from(const Hyper& h);

class AdamWGroup {
  public:
    // prefix names the state tensors ("adamw.<param>.exp_avg", "adamw.step").
    AdamWGroup(std::string prefix, const AdamWConfig& cfg, std::vector<OptimParam> params);
    // lr = cfg.lr · lr_factor. A group without parameters still counts its steps.
    void step(double lr_factor);
    double last_lr() const { return last_lr_; }
    long steps_taken() const { return step_; }
    void append_state(std::vector<OptimStateTensor>& out);
    const std::vector<OptimParam>& params() const { return params_; }

  private:
    std::string prefix_;
    AdamWConfig cfg_;
    std::vector<OptimParam> params_;
    std::vector<ParamRun> runs_;
    std::vector<float> m_, v_;
    long step_ = 0;
    double last_lr_ = 0.0;
};

OptimizerInfo adamw_info();

}  // namespace agpt
