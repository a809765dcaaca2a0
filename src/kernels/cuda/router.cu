#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/router.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kWarpsPerBlock = 8;
// torchtitan's guard against a zero denominator when renormalising sigmoid gates (as the CPU).
constexpr float kNormEps = 1e-20f;

__device__ __forceinline__ int warp_token() {
    return static_cast<int>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x) / 32;
}

// dz (E) += d(score function) from ds(e) (a function of the expert), s (E) the scores; called
// by a whole warp, each lane taking experts lane, lane+32, ...
template <typename Ds>
__device__ void add_scores_backward(float* dz, const float* s, int E, bool softmax, const Ds& ds) {
    const int lane = threadIdx.x % 32;
    if (softmax) {
        float dot = 0.0f;
        for (int e = lane; e < E; e += 32) dot += ds(e) * s[e];
        dot = warp_sum(dot);
        for (int e = lane; e < E; e += 32) dz[e] += s[e] * (ds(e) - dot);
    } else {
        for (int e = lane; e < E; e += 32) dz[e] += ds(e) * s[e] * (1.0f - s[e]);
    }
}

__global__ void router_forward_kernel(int* experts, float* gates, float* scores,
                                      const float* logits, const float* bias, int N, int E, int k,
                                      bool softmax, bool norm, float scale) {
    const int n = warp_token();
    if (n >= N) return;
    const int lane = threadIdx.x % 32;
    const float* z = logits + static_cast<long>(n) * E;
    float* s = scores + static_cast<long>(n) * E;
    if (softmax) {
        float zmax = -INFINITY;
        for (int e = lane; e < E; e += 32) zmax = fmaxf(zmax, z[e]);
        zmax = warp_max(zmax);
        float sum = 0.0f;
        for (int e = lane; e < E; e += 32) sum += expf(z[e] - zmax);
        sum = warp_sum(sum);
        for (int e = lane; e < E; e += 32) s[e] = expf(z[e] - zmax) / sum;
    } else {
        for (int e = lane; e < E; e += 32) s[e] = 1.0f / (1.0f + expf(-z[e]));
    }
    // k rounds of a warp argmax over the experts not yet chosen: largest biased score, ties to
    // the lower expert (a total order, so every lane ends with the same winner). Expert indices
    // travel as floats (exact below 2^24) through the shuffles.
    int chosen[kMaxRouterTopK];
    float picked[kMaxRouterTopK];
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        float best = -INFINITY, best_e = static_cast<float>(E), best_s = 0.0f;
        for (int e = lane; e < E; e += 32) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken |= chosen[i] == e;
            const float b = s[e] + (bias ? bias[e] : 0.0f);
            if (!taken && b > best) {  // ascending e: strict > keeps the lower one on ties
                best = b;
                best_e = static_cast<float>(e);
                best_s = s[e];
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ob = __shfl_xor_sync(kFullMask, best, o);
            const float oe = __shfl_xor_sync(kFullMask, best_e, o);
            const float os = __shfl_xor_sync(kFullMask, best_s, o);
            if (ob > best || (ob == best && oe < best_e)) {
                best = ob;
                best_e = oe;
                best_s = os;
            }
        }
        chosen[j] = static_cast<int>(best_e);
        picked[j] = best_s;
        sum += best_s;
    }
    if (lane != 0) return;
    const float factor = scale / (norm ? sum + kNormEps : 1.0f);
    for (int j = 0; j < k; j++) {
        experts[static_cast<long>(n) * k + j] = chosen[j];
        gates[static_cast<long>(n) * k + j] = picked[j] * factor;
    }
}

__global__ void router_backward_kernel(float* dlogits, const float* dgates, const float* scores,
                                       const int* experts, int N, int E, int k, bool softmax,
                                       bool norm, float scale) {
    const int n = warp_token();
    if (n >= N) return;
    const float* s = scores + static_cast<long>(n) * E;
    const int* chosen = experts + static_cast<long>(n) * k;
    const float* dg = dgates + static_cast<long>(n) * k;
    // g_j = scale · s_j / S with S = Σ_m s_m + eps over the chosen experts (route_norm):
    // ∂L/∂s_j = scale · (dg_j − Σ_m dg_m s_m / S) / S.
    float sum = 0.0f, dot = 0.0f;
    if (norm) {
        for (int j = 0; j < k; j++) {
            sum += s[chosen[j]];
            dot += dg[j] * s[chosen[j]];
        }
        sum += kNormEps;
    }
    const auto ds = [&](int e) {
        float v = 0.0f;
        for (int j = 0; j < k; j++)
            if (chosen[j] == e) v = norm ? scale * (dg[j] - dot / sum) / sum : scale * dg[j];
        return v;
    };
    add_scores_backward(dlogits + static_cast<long>(n) * E, s, E, softmax, ds);
}

__global__ void router_scores_backward_kernel(float* dlogits, const float* dscores,
                                              const float* scores, int N, int E, bool softmax) {
    const int n = warp_token();
    if (n >= N) return;
    const float* d = dscores + static_cast<long>(n) * E;
    add_scores_backward(dlogits + static_cast<long>(n) * E, scores + static_cast<long>(n) * E, E,
                        softmax, [&](int e) { return d[e]; });
}

// One block per sequence, one thread per expert (blockDim >= E, a multiple of 32).
__global__ void aux_loss_forward_kernel(float* aux_f, float* seq_loss, const int* experts,
                                        const float* scores, int E, int k, int T_len,
                                        float f_scale) {
    __shared__ float red[32];
    const int b = blockIdx.x, e = threadIdx.x;
    const bool mine = e < E;
    float count = 0.0f, P = 0.0f;
    for (int t = b * T_len; t < (b + 1) * T_len; t++) {
        const float v = mine ? scores[static_cast<long>(t) * E + e] : 0.0f;
        const float sum = block_sum(v, red);
        P += v / sum / static_cast<float>(T_len);
        for (int j = 0; j < k; j++)
            count += experts[static_cast<long>(t) * k + j] == e ? 1.0f : 0.0f;
    }
    const float f = count * f_scale;
    if (mine) aux_f[static_cast<long>(b) * E + e] = f;
    const float l = block_sum(mine ? f * P : 0.0f, red);
    if (threadIdx.x == 0) seq_loss[b] = l;
}

// ∂L/∂s'_{t,e} = c·f_{b,e} with s' = s/Σs: ∂L/∂s_e = (c·f_e − Σ_j c·f_j·s'_j)/Σs.
__global__ void aux_loss_backward_kernel(float* dlogits, const float* aux_f, const float* scores,
                                         int N, int E, int T_len, float c, bool softmax) {
    const int n = warp_token();
    if (n >= N) return;
    const int lane = threadIdx.x % 32;
    const float* s = scores + static_cast<long>(n) * E;
    const float* f = aux_f + static_cast<long>(n / T_len) * E;
    float sum = 0.0f;
    for (int e = lane; e < E; e += 32) sum += s[e];
    sum = warp_sum(sum);
    float dot = 0.0f;
    for (int e = lane; e < E; e += 32) dot += c * f[e] * s[e] / sum;
    dot = warp_sum(dot);
    add_scores_backward(dlogits + static_cast<long>(n) * E, s, E, softmax,
                        [&](int e) { return (c * f[e] - dot) / sum; });
}

long warp_blocks(int N) {
    return ceil_div(N, kWarpsPerBlock);
}

}  // namespace

void router_forward(int* experts, float* gates, float* scores, const float* logits,
                    const float* expert_bias, int N, int E, int k, const cpu::RouterOptions& opt,
                    cudaStream_t stream) {
    if (k < 1 || k > kMaxRouterTopK || k > E)
        fail_call("bad top_k: needs 1 <= k <= min(16, experts)", "router_forward", __FILE__,
                  __LINE__);
    if (N <= 0) return;
    router_forward_kernel<<<warp_blocks(N), kWarpsPerBlock * 32, 0, stream>>>(
        experts, gates, scores, logits, expert_bias, N, E, k,
        opt.score == cpu::RouterScore::softmax, opt.route_norm,
        static_cast<float>(opt.route_scale));
    AGPT_CUDA_CHECK_LAUNCH();
}

void router_backward(float* dlogits, const float* dgates, const float* scores, const int* experts,
                     int N, int E, int k, const cpu::RouterOptions& opt, cudaStream_t stream) {
    if (N <= 0) return;
    router_backward_kernel<<<warp_blocks(N), kWarpsPerBlock * 32, 0, stream>>>(
        dlogits, dgates, scores, experts, N, E, k, opt.score == cpu::RouterScore::softmax,
        opt.route_norm, static_cast<float>(opt.route_scale));
    AGPT_CUDA_CHECK_LAUNCH();
}

void router_scores_backward(float* dlogits, const float* dscores, const float* scores, int N, int E,
                            cpu::RouterScore score, cudaStream_t stream) {
    if (N <= 0) return;
    router_scores_backward_kernel<<<warp_blocks(N), kWarpsPerBlock * 32, 0, stream>>>(
        dlogits, dscores, scores, N, E, score == cpu::RouterScore::softmax);
    AGPT_CUDA_CHECK_LAUNCH();
}

void moe_aux_loss_forward(float* aux_f, float* seq_loss, const int* experts, const float* scores,
                          int N, int E, int k, int seq_len, cudaStream_t stream) {
    if (E > 1024 || seq_len <= 0 || N % seq_len != 0)
        fail_call("bad shape: needs E <= 1024 and whole sequences", "moe_aux_loss_forward",
                  __FILE__, __LINE__);
    if (N <= 0) return;
    const int threads = static_cast<int>(ceil_div(E, 32) * 32);
    const float f_scale = static_cast<float>(static_cast<double>(E) / (k * seq_len));
    aux_loss_forward_kernel<<<N / seq_len, threads, 0, stream>>>(aux_f, seq_loss, experts, scores,
                                                                 E, k, seq_len, f_scale);
    AGPT_CUDA_CHECK_LAUNCH();
}

void moe_aux_loss_backward(float* dlogits, const float* aux_f, const float* scores, int N, int E,
                           int seq_len, double alpha, double weight, cpu::RouterScore score,
                           cudaStream_t stream) {
    if (N <= 0) return;
    // c = weight·α/(S·T) with S·T = N.
    const float c = static_cast<float>(weight * alpha / N);
    aux_loss_backward_kernel<<<warp_blocks(N), kWarpsPerBlock * 32, 0, stream>>>(
        dlogits, aux_f, scores, N, E, seq_len, c, score == cpu::RouterScore::softmax);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace agpt::cuda
