#pragma once
// The arithmetic of GRPO (Shao et al. 2024, "DeepSeekMath"), kept apart from the loop so that
// tests can check it against direct computation.
//
// For a prompt q, G completions o_1..o_G are sampled from the policy π_old and scored r_1..r_G.
// Each completion's advantage is its reward normalised within the group:
//   A_i = (r_i − mean(r)) / (std(r) + eps)          (std with Bessel's correction, as TRL)
// Each completion token t of o_i contributes, with ratio ρ = π_θ(o_it) / π_old(o_it),
//   ℓ_it = −min(ρ·A_i, clip(ρ, 1−ε, 1+ε)·A_i) + β·KL_it
//   KL_it = exp(ref − logp) − (ref − logp) − 1       (Schulman's k3: unbiased, always ≥ 0)
// where logp = log π_θ(o_it) and ref = log π_ref(o_it) under the frozen initial model. The loss
// of a batch of N completions is Σ_i (1/|o_i|) Σ_t ℓ_it / N: tokens are averaged within a
// completion, completions averaged over the batch.
//
// The loss depends on the parameters only through each logp, so its gradient is
// Σ_it (∂ℓ_it/∂logp)·∇logp: a per-token weighted cross-entropy backward
// (Transformer::forward_backward_weighted with weights −∂ℓ/∂logp / (|o_i|·N)).
#include <vector>

namespace agpt {

// rewards: groups of group_size back to back. Returns one advantage per reward; a group whose
// rewards are all equal gets advantages 0.
std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size,
                                     double eps = 1e-4);

struct GrpoTokenTerms {
    double loss = 0;         // ℓ
    double dloss_dlogp = 0;  // ∂ℓ/∂logp
    double kl = 0;           // k3
    double ratio = 1;        // ρ
    bool clipped = false;    // the clipped term was the smaller one (no policy gradient)
};

GrpoTokenTerms grpo_token_terms(double logp, double old_logp, double ref_logp, double advantage,
                                double clip_eps, double kl_coef);

// k3 = exp(ref − logp) − (ref − logp) − 1 and its derivative in logp, 1 − exp(ref − logp).
double kl_k3(double logp, double ref_logp);
double kl_k3_grad(double logp, double ref_logp);

}  // namespace agpt
