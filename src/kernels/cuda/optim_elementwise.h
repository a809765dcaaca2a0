#pragma once
// Element-wise optimizer updates on the GPU over flat fp32 slices, each with the arithmetic of
// its CPU optimizer in src/optim (every product and sum one IEEE-rounded operation, as those
// files compile with fp-contract off; the lerps are ATen's fused ones). AdamW's own update is
// kernels/cuda/adamw.h. Where an update writes the parameters, a non-null param_bf16 also
// receives them rounded to bf16 (the compute copy of bf16 training), in the same pass.
#include <cstddef>

#include "kernels/cuda/device.h"

namespace agpt::cuda {

// Lion (optim/lion.cpp): w = w·decay − lr·sign(β1·m + (1−β1)·g); m = β2·m + (1−β2)·g.
struct LionStep {
    float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, neg_lr;
};
void lion_update(float* param, const float* grad, float* m, std::size_t n, const LionStep& s,
                 bf16* param_bf16, cudaStream_t stream);

// AdEMAMix (optim/ademamix.cpp): fast and slow EMAs of g, v of g², the update
// (m1/bc1 + α·m2) / (√v/√bc2 + eps) + wd·w. fast = false (β1 = 0) uses g for m1 and leaves m1.
struct AdEMAMixStep {
    float beta1, one_minus_beta1, beta2, one_minus_beta2, beta3, one_minus_beta3, sqrt_bc2, bc1,
        alpha, eps, weight_decay, neg_lr;
    bool fast;
};
void ademamix_update(float* param, const float* grad, float* m1, float* m2, float* v, std::size_t n,
                     const AdEMAMixStep& s, bf16* param_bf16, cudaStream_t stream);

// SPAM (optim/spam.cpp): moments reset to 0 first when `reset`; with `clip`, g beyond
// θ·v is clipped to sign(g)·√(θ·v); Adam's update scaled by neg_step; with `decay`,
// p += neg_decay·p after it.
struct SpamStep {
    float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, theta, neg_step, neg_decay;
    bool reset, clip, decay;
};
void spam_update(float* param, const float* grad, float* m, float* v, std::size_t n,
                 const SpamStep& s, bf16* param_bf16, cudaStream_t stream);

// Schedule-Free AdamW's step at y (optim/schedule_free_adamw.cpp): v's EMA, the normalised
// gradient (+ decay·y when `decay`), y = lerp(y, z, c) + y_coef·gn, z −= lr·gn.
struct ScheduleFreeStep {
    float beta2, one_minus_beta2, bc2, eps, weight_decay, c, y_coef, lr;
    bool decay;
};
void schedule_free_update(float* y, const float* grad, float* z, float* v, std::size_t n,
                          const ScheduleFreeStep& s, bf16* y_bf16, cudaStream_t stream);
// Schedule-Free's evaluation point: stash = param; param = lerp(param, z, w).
void schedule_free_to_x(float* param, const float* z, float* stash, std::size_t n, float w,
                        bf16* param_bf16, cudaStream_t stream);

// SophiaG (optim/sophia.cpp): m's EMA, then w = w·decay − lr·sign(m)·min(|m| / (ρ·bs·h + 1e-15),
// 1) (a NaN ratio stays NaN, as torch's clamp). The Hessian EMA h = β2·h + (1−β2)·g² is its own
// pass, after the trainer's estimate has replaced the gradients.
struct SophiaStep {
    float decay, beta1, one_minus_beta1, rho_bs, neg_lr;
};
void sophia_update(float* param, const float* grad, float* m, const float* h, std::size_t n,
                   const SophiaStep& s, bf16* param_bf16, cudaStream_t stream);
void sophia_hessian_ema(float* h, const float* grad, std::size_t n, float beta2,
                        float one_minus_beta2, cudaStream_t stream);

// Muon's momentum (optim/muon.cpp): buf = lerp(buf, g, 1−μ); update = nesterov ?
// lerp(g, buf, μ) : buf. Both weights are given as the CPU rounds them (1−μ in double).
void muon_momentum(float* buf, const float* grad, float* update, std::size_t n,
                   float one_minus_momentum, float momentum, bool nesterov, cudaStream_t stream);

// param = param·decay + neg_lr·update (the matrix optimizers' last step).
void decayed_update(float* param, const float* update, std::size_t n, float decay, float neg_lr,
                    bf16* param_bf16, cudaStream_t stream);

}  // namespace agpt::cuda
