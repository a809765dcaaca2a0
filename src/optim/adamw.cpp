#include "optim/adamw.h"

#include <cmath>

#include "core/error.h"
#include "kernels/cpu/adamw.h"

namespace agpt {

AdamW::AdamW(const AdamWConfig& cfg, std::size_t n_params)
    : cfg_(cfg), m_(n_params, 0.0f), v_(n_params, 0.0f) {
    // The same bounds torch.optim.AdamW checks, so a config torch rejects is rejected here too.
    if (!(cfg.lr >= 0.0)) fail("adamw: invalid learning rate {}", cfg.lr);
    if (!(cfg.eps >= 0.0)) fail("adamw: invalid eps {}", cfg.eps);
    if (!(cfg.beta1 >= 0.0 && cfg.beta1 < 1.0)) fail("adamw: invalid beta1 {}", cfg.beta1);
    if (!(cfg.beta2 >= 0.0 && cfg.beta2 < 1.0)) fail("adamw: invalid beta2 {}", cfg.beta2);
    if (!(cfg.weight_decay >= 0.0)) fail("adamw: invalid weight_decay {}", cfg.weight_decay);
}

void AdamW::step(float* params, const float* grads, double lr) {
    if (!std::isfinite(lr) || lr < 0.0)
        fail("adamw: invalid learning rate {} at step {}", lr, step_ + 1);
    ++step_;
    const cpu::AdamWStep s{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay, step_};
    cpu::adamw_update<float>(params, grads, m_.data(), v_.data(), m_.size(), s);
}

}  // namespace agpt
