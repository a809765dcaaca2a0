#include "kernels/cuda/common.cuh"
#include "kernels/cuda/optim_elementwise.h"

namespace agpt::cuda {

namespace {

constexpr int kThreads = 256;

// ATen's lerp: a small weight interpolates from the start, a large one from the end (so w = 1
// lands exactly on `end`), one fused multiply-add either way.
__device__ __forceinline__ float aten_lerp(float start, float end, float w) {
    const float d = __fsub_rn(end, start);
    return fabsf(w) < 0.5f ? __fmaf_rn(w, d, start) : __fmaf_rn(-__fsub_rn(1.0f, w), d, end);
}

__device__ __forceinline__ float sign_of(float x) {
    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
}

__device__ __forceinline__ std::size_t element_index() {
    return static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__global__ void lion_kernel(float* param, const float* grad, float* m, std::size_t n, LionStep s,
                            __nv_bfloat16* param_bf16) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float g = grad[i], m_old = m[i];
    const float p = __fmul_rn(param[i], s.decay);
    const float u = __fadd_rn(__fmul_rn(m_old, s.beta1), __fmul_rn(g, s.one_minus_beta1));
    const float p_new = __fadd_rn(p, __fmul_rn(s.neg_lr, sign_of(u)));
    param[i] = p_new;
    m[i] = __fadd_rn(__fmul_rn(m_old, s.beta2), __fmul_rn(s.one_minus_beta2, g));
    if (param_bf16) param_bf16[i] = __float2bfloat16(p_new);
}

__global__ void ademamix_kernel(float* param, const float* grad, float* m1, float* m2, float* v,
                                std::size_t n, AdEMAMixStep s, __nv_bfloat16* param_bf16) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float g = grad[i];
    float fast = g;
    if (s.fast) {
        fast = __fadd_rn(__fmul_rn(m1[i], s.beta1), __fmul_rn(s.one_minus_beta1, g));
        m1[i] = fast;
    }
    const float slow = __fadd_rn(__fmul_rn(m2[i], s.beta3), __fmul_rn(s.one_minus_beta3, g));
    m2[i] = slow;
    const float vi =
        __fadd_rn(__fmul_rn(v[i], s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
    v[i] = vi;
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.sqrt_bc2), s.eps);
    const float w = param[i];
    float u = __fdiv_rn(__fadd_rn(__fdiv_rn(fast, s.bc1), __fmul_rn(s.alpha, slow)), denom);
    u = __fadd_rn(u, __fmul_rn(s.weight_decay, w));
    const float p_new = __fadd_rn(w, __fmul_rn(s.neg_lr, u));
    param[i] = p_new;
    if (param_bf16) param_bf16[i] = __float2bfloat16(p_new);
}

__global__ void spam_kernel(float* param, const float* grad, float* m, float* v, std::size_t n,
                            SpamStep s, __nv_bfloat16* param_bf16) {
    const std::size_t i = element_index();
    if (i >= n) return;
    float mi = s.reset ? 0.0f : m[i];
    float vi = s.reset ? 0.0f : v[i];
    float g = grad[i];
    if (s.clip && __fmul_rn(g, g) > __fmul_rn(s.theta, vi))
        g = __fmul_rn(sign_of(g), __fsqrt_rn(__fmul_rn(vi, s.theta)));
    mi = __fadd_rn(__fmul_rn(mi, s.beta1), __fmul_rn(s.one_minus_beta1, g));
    vi = __fadd_rn(__fmul_rn(vi, s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
    const float denom = __fadd_rn(__fsqrt_rn(vi), s.eps);
    float p = __fadd_rn(param[i], __fmul_rn(s.neg_step, __fdiv_rn(mi, denom)));
    if (s.decay) p = __fadd_rn(p, __fmul_rn(s.neg_decay, p));
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
    if (param_bf16) param_bf16[i] = __float2bfloat16(p);
}

__global__ void schedule_free_kernel(float* y, const float* grad, float* z, float* v, std::size_t n,
                                     ScheduleFreeStep s, __nv_bfloat16* y_bf16) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float g = grad[i];
    const float vi =
        __fadd_rn(__fmul_rn(v[i], s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
    v[i] = vi;
    const float denom = __fadd_rn(__fsqrt_rn(__fdiv_rn(vi, s.bc2)), s.eps);
    const float yi = y[i], zi = z[i];
    float gn = __fdiv_rn(g, denom);
    if (s.decay) gn = __fadd_rn(gn, __fmul_rn(s.weight_decay, yi));
    const float y_new = __fadd_rn(aten_lerp(yi, zi, s.c), __fmul_rn(s.y_coef, gn));
    y[i] = y_new;
    z[i] = __fsub_rn(zi, __fmul_rn(s.lr, gn));
    if (y_bf16) y_bf16[i] = __float2bfloat16(y_new);
}

__global__ void schedule_free_to_x_kernel(float* param, const float* z, float* stash, std::size_t n,
                                          float w, __nv_bfloat16* param_bf16) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float p = param[i];
    stash[i] = p;
    const float x = aten_lerp(p, z[i], w);
    param[i] = x;
    if (param_bf16) param_bf16[i] = __float2bfloat16(x);
}

__global__ void sophia_kernel(float* param, const float* grad, float* m, const float* h,
                              std::size_t n, SophiaStep s, __nv_bfloat16* param_bf16) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float p = __fmul_rn(param[i], s.decay);
    const float mi = __fadd_rn(__fmul_rn(m[i], s.beta1), __fmul_rn(s.one_minus_beta1, grad[i]));
    m[i] = mi;
    const float q = __fdiv_rn(fabsf(mi), __fadd_rn(__fmul_rn(s.rho_bs, h[i]), 1e-15f));
    const float ratio = q > 1.0f ? 1.0f : q;
    const float p_new = __fadd_rn(p, __fmul_rn(s.neg_lr, __fmul_rn(sign_of(mi), ratio)));
    param[i] = p_new;
    if (param_bf16) param_bf16[i] = __float2bfloat16(p_new);
}

__global__ void sophia_hessian_kernel(float* h, const float* grad, std::size_t n, float beta2,
                                      float one_minus_beta2) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float g = grad[i];
    h[i] = __fadd_rn(__fmul_rn(h[i], beta2), __fmul_rn(__fmul_rn(one_minus_beta2, g), g));
}

__global__ void muon_momentum_kernel(float* buf, const float* grad, float* update, std::size_t n,
                                     float one_minus_momentum, float momentum, bool nesterov) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float g = grad[i];
    const float b = aten_lerp(buf[i], g, one_minus_momentum);
    buf[i] = b;
    update[i] = nesterov ? aten_lerp(g, b, momentum) : b;
}

__global__ void decayed_update_kernel(float* param, const float* update, std::size_t n, float decay,
                                      float neg_lr, __nv_bfloat16* param_bf16) {
    const std::size_t i = element_index();
    if (i >= n) return;
    const float p_new = __fadd_rn(__fmul_rn(param[i], decay), __fmul_rn(neg_lr, update[i]));
    param[i] = p_new;
    if (param_bf16) param_bf16[i] = __float2bfloat16(p_new);
}

}  // namespace

void lion_update(float* param, const float* grad, float* m, std::size_t n, const LionStep& s,
                 bf16* param_bf16, cudaStream_t stream) {
    if (n == 0) return;
    lion_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        param, grad, m, n, s, param_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

void ademamix_update(float* param, const float* grad, float* m1, float* m2, float* v, std::size_t n,
                     const AdEMAMixStep& s, bf16* param_bf16, cudaStream_t stream) {
    if (n == 0) return;
    ademamix_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        param, grad, m1, m2, v, n, s, param_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

void spam_update(float* param, const float* grad, float* m, float* v, std::size_t n,
                 const SpamStep& s, bf16* param_bf16, cudaStream_t stream) {
    if (n == 0) return;
    spam_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        param, grad, m, v, n, s, param_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

void schedule_free_update(float* y, const float* grad, float* z, float* v, std::size_t n,
                          const ScheduleFreeStep& s, bf16* y_bf16, cudaStream_t stream) {
    if (n == 0) return;
    schedule_free_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        y, grad, z, v, n, s, y_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

void schedule_free_to_x(float* param, const float* z, float* stash, std::size_t n, float w,
                        bf16* param_bf16, cudaStream_t stream) {
    if (n == 0) return;
    schedule_free_to_x_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        param, z, stash, n, w, param_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

void sophia_update(float* param, const float* grad, float* m, const float* h, std::size_t n,
                   const SophiaStep& s, bf16* param_bf16, cudaStream_t stream) {
    if (n == 0) return;
    sophia_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        param, grad, m, h, n, s, param_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

void sophia_hessian_ema(float* h, const float* grad, std::size_t n, float beta2,
                        float one_minus_beta2, cudaStream_t stream) {
    if (n == 0) return;
    sophia_hessian_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        h, grad, n, beta2, one_minus_beta2);
    AGPT_CUDA_CHECK_LAUNCH();
}

void muon_momentum(float* buf, const float* grad, float* update, std::size_t n,
                   float one_minus_momentum, float momentum, bool nesterov, cudaStream_t stream) {
    if (n == 0) return;
    muon_momentum_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        buf, grad, update, n, one_minus_momentum, momentum, nesterov);
    AGPT_CUDA_CHECK_LAUNCH();
}

void decayed_update(float* param, const float* update, std::size_t n, float decay, float neg_lr,
                    bf16* param_bf16, cudaStream_t stream) {
    if (n == 0) return;
    decayed_update_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        param, update, n, decay, neg_lr, param_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace agpt::cuda
