#pragma once
// The mixture-of-experts router on the GPU, as kernels/cpu/router.h (softmax or sigmoid scores,
// top-k of score + expert_bias with ties to the lower expert, gates normalised and scaled), and
// DeepSeek-V3's sequence-level balance loss of model/moe.h. One warp per token.
//
// Logits, scores and gates are fp32 whatever the activations' storage: bf16 scores would flip
// the choice between nearly equal experts (DeepSeek-V3 keeps its gate in fp32 too), and the
// (N, E) arrays are small.
#include "kernels/cpu/router.h"
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// Largest top_k the kernels take (the chosen experts of a token sit in registers).
inline constexpr int kMaxRouterTopK = 16;

// logits (N,E) -> scores (N,E), experts (N,k) in order of decreasing biased score, gates (N,k).
// expert_bias (E) may be null.
void router_forward(int* experts, float* gates, float* scores, const float* logits,
                    const float* expert_bias, int N, int E, int k, const cpu::RouterOptions& opt,
                    cudaStream_t stream = nullptr);

// Accumulates dlogits (N,E) from dgates (N,k).
void router_backward(float* dlogits, const float* dgates, const float* scores, const int* experts,
                     int N, int E, int k, const cpu::RouterOptions& opt,
                     cudaStream_t stream = nullptr);

// Accumulates dlogits (N,E) from a gradient with respect to the scores, dscores (N,E).
void router_scores_backward(float* dlogits, const float* dscores, const float* scores, int N, int E,
                            cpu::RouterScore score, cudaStream_t stream = nullptr);

// The balance loss of model/moe.h per sequence of seq_len tokens (N / seq_len sequences):
// aux_f (S,E) = E/(k·T)·(tokens of the sequence routed to e), seq_loss (S) = Σ_e f_e·P_e with
// P_e the sequence's mean of s_e / Σ_j s_j. The loss is α·mean(seq_loss).
void moe_aux_loss_forward(float* aux_f, float* seq_loss, const int* experts, const float* scores,
                          int N, int E, int k, int seq_len, cudaStream_t stream = nullptr);

// Accumulates into dlogits (N,E) `weight` times the gradient of α·mean(seq_loss) (f is constant:
// the counts are piecewise constant).
void moe_aux_loss_backward(float* dlogits, const float* aux_f, const float* scores, int N, int E,
                           int seq_len, double alpha, double weight, cpu::RouterScore score,
                           cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
