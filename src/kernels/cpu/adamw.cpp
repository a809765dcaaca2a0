#include "kernels/cpu/adamw.h"

#include <cmath>
#include <cstddef>

// Each product and sum below is one PyTorch op, rounded on its own. Letting the compiler fuse
// them into FMAs would change the last bits, and differently in the vector body and the scalar
// remainder of a thread's chunk; chunk boundaries move with the thread count, so the update would
// stop being bit-identical between 1 and N threads. The one fused step (the lerp) is written
// with std::fma explicitly.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace agpt::cpu {

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, std::size_t n, const AdamWStep& s) {
    // torch does this scalar arithmetic on Python floats (double) and casts each result to the
    // tensor's dtype when the op that uses it runs; `step` is read off a float tensor as a double.
    const double t = static_cast<double>(s.step);
    const double bias_correction1 = 1.0 - std::pow(s.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(s.beta2, t);
    const T decay = static_cast<T>(1.0 - s.lr * s.weight_decay);
    const T beta2 = static_cast<T>(s.beta2);
    const T one_minus_beta2 = static_cast<T>(1.0 - s.beta2);
    // Python computes `bias_correction2 ** 0.5`, which is pow, not sqrt.
    const T bc2_sqrt = static_cast<T>(std::pow(bias_correction2, 0.5));
    const T eps = static_cast<T>(s.eps);
    const T neg_step_size = static_cast<T>(-(s.lr / bias_correction1));

    // exp_avg.lerp_(grad, w) as ATen's CPU kernel does it: a small weight interpolates from the
    // start, a large one from the end, so that w = 1 lands exactly on grad. Its vectorised path
    // fuses the multiply-add, which is the path every float tensor longer than a vector takes.
    const T w = static_cast<T>(1.0 - s.beta1);
    const bool small_weight = std::abs(w) < T(0.5);
    const T coeff = small_weight ? w : w - T(1);

#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) {
        const T g = grad[i];
        const T p = param[i] * decay;
        const T m_old = m[i];
        const T base = small_weight ? m_old : g;
#if defined(FP_FAST_FMA) && defined(FP_FAST_FMAF)
        const T m_new = std::fma(coeff, g - m_old, base);
#else
        const T m_new = base + coeff * (g - m_old);
#endif
        const T v_scaled = v[i] * beta2;
        const T v_new = v_scaled + one_minus_beta2 * g * g;
        const T denom = std::sqrt(v_new) / bc2_sqrt + eps;
        param[i] = p + neg_step_size * m_new / denom;
        m[i] = m_new;
        v[i] = v_new;
    }
}

template void adamw_update<float>(float*, const float*, float*, float*, std::size_t,
                                  const AdamWStep&);
template void adamw_update<double>(double*, const double*, double*, double*, std::size_t,
                                   const AdamWStep&);

}  // namespace agpt::cpu
