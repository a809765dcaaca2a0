#include <cmath>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/common.cuh"

namespace agpt::cuda {

namespace {

// The step's scalars, computed on the host in double exactly as the CPU kernel does and then
// rounded to float.
struct Scalars {
    float decay, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size, coeff;
    bool small_weight;
};

// Each operation is an explicit IEEE-rounded intrinsic, so nvcc cannot fuse multiply-adds
// (it would by default) and the result matches the CPU's op-by-op rounding.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v,
                             __nv_bfloat16* param_bf16, std::size_t n, Scalars s) {
    const std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = grad[i];
    const float p = __fmul_rn(param[i], s.decay);
    const float m_old = m[i];
    const float base = s.small_weight ? m_old : g;
    const float m_new = __fmaf_rn(s.coeff, __fsub_rn(g, m_old), base);  // ATen's lerp
    const float v_scaled = __fmul_rn(v[i], s.beta2);
    const float v_new = __fadd_rn(v_scaled, __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_new), s.bc2_sqrt), s.eps);
    const float p_new = __fadd_rn(p, __fdiv_rn(__fmul_rn(s.neg_step_size, m_new), denom));
    param[i] = p_new;
    m[i] = m_new;
    v[i] = v_new;
    if (param_bf16) param_bf16[i] = __float2bfloat16(p_new);
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, std::size_t n,
                  const AdamWStep& st, bf16* param_bf16, cudaStream_t stream) {
    if (n == 0) return;
    const double t = static_cast<double>(st.step);
    const double bias_correction1 = 1.0 - std::pow(st.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(st.beta2, t);
    Scalars s;
    s.decay = static_cast<float>(1.0 - st.lr * st.weight_decay);
    s.beta2 = static_cast<float>(st.beta2);
    s.one_minus_beta2 = static_cast<float>(1.0 - st.beta2);
    s.bc2_sqrt = static_cast<float>(std::pow(bias_correction2, 0.5));
    s.eps = static_cast<float>(st.eps);
    s.neg_step_size = static_cast<float>(-(st.lr / bias_correction1));
    const float w = static_cast<float>(1.0 - st.beta1);
    s.small_weight = std::abs(w) < 0.5f;
    s.coeff = s.small_weight ? w : w - 1.0f;
    adamw_kernel<<<ceil_div(static_cast<long>(n), 256), 256, 0, stream>>>(param, grad, m, v,
                                                                          param_bf16, n, s);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace agpt::cuda
