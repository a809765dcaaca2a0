#pragma once
// Token-choice top-k router of a mixture-of-experts layer (DeepSeek-V3 / torchtitan).
//
// logits (N,E) = x · routerᵀ are turned into scores (N,E): softmax over the E experts or an
// element-wise sigmoid. Each token picks the k experts with the largest score + expert_bias
// (the bias only steers the choice: it is the aux-loss-free balancing state, not a trained
// weight). Ties go to the lower expert index, so routing is deterministic. The gates are the
// unbiased scores of the chosen experts, optionally divided by their sum (route_norm), then
// multiplied by route_scale.
namespace agpt::cpu {

enum class RouterScore { softmax, sigmoid };
const char* router_score_name(RouterScore s);  // "softmax" | "sigmoid"

struct RouterOptions {
    RouterScore score = RouterScore::softmax;
    bool route_norm = false;
    double route_scale = 1.0;
};

// logits (N,E) -> scores (N,E), experts (N,k) chosen in order of decreasing biased score,
// gates (N,k). expert_bias (E) may be null (no bias).
template <typename T>
void router_forward(int* experts, T* gates, T* scores, const T* logits, const float* expert_bias,
                    int N, int E, int k, const RouterOptions& opt);

// Accumulates dlogits (N,E) from dgates (N,k). The choice of experts is piecewise constant, so
// only the gates carry a gradient.
template <typename T>
void router_backward(T* dlogits, const T* dgates, const T* scores, const int* experts, int N, int E,
                     int k, const RouterOptions& opt);

// Accumulates dlogits (N,E) from a gradient with respect to the scores themselves, dscores (N,E)
// (the sequence-level auxiliary loss reads every score, not only the gates).
template <typename T>
void router_scores_backward(T* dlogits, const T* dscores, const T* scores, int N, int E,
                            RouterScore score);

}  // namespace agpt::cpu
