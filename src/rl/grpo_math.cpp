#include "rl/grpo_math.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace agpt {

std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size,
                                     double eps) {
    if (group_size < 2 || rewards.size() % static_cast<std::size_t>(group_size) != 0)
        fail("grpo: {} rewards do not form groups of {} (group_size must be >= 2)", rewards.size(),
             group_size);
    std::vector<double> adv(rewards.size());
    for (std::size_t g = 0; g < rewards.size(); g += group_size) {
        double mean = 0;
        for (int i = 0; i < group_size; i++) mean += rewards[g + i];
        mean /= group_size;
        double var = 0;
        for (int i = 0; i < group_size; i++)
            var += (rewards[g + i] - mean) * (rewards[g + i] - mean);
        const double std = std::sqrt(var / (group_size - 1));
        for (int i = 0; i < group_size; i++) adv[g + i] = (rewards[g + i] - mean) / (std + eps);
    }
    return adv;
}

double kl_k3(double logp, double ref_logp) {
    const double d = ref_logp - logp;
    return std::exp(d) - d - 1.0;
}

double kl_k3_grad(double logp, double ref_logp) {
    return 1.0 - std::exp(ref_logp - logp);
}

GrpoTokenTerms grpo_token_terms(double logp, double old_logp, double ref_logp, double advantage,
                                double clip_eps, double kl_coef) {
    GrpoTokenTerms t;
    t.ratio = std::exp(logp - old_logp);
    const double unclipped = t.ratio * advantage;
    const double clipped = std::clamp(t.ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage;
    t.clipped = clipped < unclipped;
    const double surrogate = t.clipped ? clipped : unclipped;
    // d(ρ·A)/dlogp = ρ·A; the clipped term is constant in logp where it is the minimum.
    const double dsurrogate = t.clipped ? 0.0 : unclipped;
    t.kl = kl_coef > 0 ? kl_k3(logp, ref_logp) : 0.0;
    t.loss = -surrogate + kl_coef * t.kl;
    t.dloss_dlogp = -dsurrogate + (kl_coef > 0 ? kl_coef * kl_k3_grad(logp, ref_logp) : 0.0);
    return t;
}

}  // namespace agpt
