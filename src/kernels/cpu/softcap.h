#pragma once
// Logit soft-capping, c·tanh(x/c) (Gemma 2; design.md's attention-logit and final-logit
// variants): smooth, monotone, bounded to (−c, c), the identity near 0. Used inside the
// attention kernels (attention.cpp, attention_decode.cpp) and the fused LM head
// (cross_entropy.cpp), and on returned logits (softcap_forward).
//
// tanh is written through exp_vec so that the loops calling it vectorise:
// tanh(u) = 1 − 2/(exp(2u) + 1). Its absolute error is that of exp_vec (~1e-7 float, ~1e-16
// double), so c·tanh carries about c·1e-7 absolute error in float; −inf (a masked score) stays
// −inf, and ±large inputs give ±c.
#include <limits>

#include "kernels/cpu/vec_math.h"

namespace agpt::cpu {

template <typename T>
inline T tanh_vec(T u) {
    return T(1) - T(2) / (exp_vec(T(2) * u) + T(1));
}

// c·tanh(x/c) for c > 0; −inf passes through (masked attention scores stay masked).
template <typename T>
inline T softcap_vec(T x, T cap) {
    const T capped = cap * tanh_vec(x / cap);
    return x == -std::numeric_limits<T>::infinity() ? x : capped;
}

// d(c·tanh(x/c))/dx from the capped value y = c·tanh(x/c): 1 − (y/c)². A masked (−inf) y gives
// 0 rather than −inf so that it multiplies a zero probability into 0, not NaN.
template <typename T>
inline T softcap_grad_from_output(T y, T cap) {
    const T t = y / cap;
    return t < T(-1) ? T(0) : T(1) - t * t;
}

// In place: x[i] = cap·tanh(x[i]/cap) for i < n (logits returned to a caller). cap <= 0: no-op.
template <typename T>
void softcap_forward(T* x, long n, T cap);

}  // namespace agpt::cpu
