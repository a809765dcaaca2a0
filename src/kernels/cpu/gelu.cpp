#include "kernels/cpu/gelu.h"

#include "kernels/cpu/vec_math.h"

namespace agpt::cpu {

namespace {

// tanh(u) = 1 − 2 / (exp(2u) + 1): exact limits ±1 (exp_vec clamps its argument), an absolute
// error of a few ulps near 0, and it vectorises where std::tanh would be a scalar call.
template <typename T>
inline T tanh_vec(T u) {
    return T(1) - T(2) / (exp_vec(T(2) * u) + T(1));
}

template <typename T>
constexpr T kSqrt2OverPi = T(0.79788456080286535587989211986876);  // √(2/π)
template <typename T>
constexpr T kCubic = T(0.044715);

}  // namespace

template <typename T>
void gelu_forward(T* out, const T* inp, long n) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        const T x = inp[i];
        const T t = tanh_vec(kSqrt2OverPi<T> * (x + kCubic<T> * x * x * x));
        out[i] = T(0.5) * x * (T(1) + t);
    }
}

template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, long n) {
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; i++) {
        const T x = inp[i];
        const T t = tanh_vec(kSqrt2OverPi<T> * (x + kCubic<T> * x * x * x));
        // d/dx: 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²)
        const T local = T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * kSqrt2OverPi<T> *
                                                  (T(1) + T(3) * kCubic<T> * x * x);
        dinp[i] += local * dout[i];
    }
}

template void gelu_forward<float>(float*, const float*, long);
template void gelu_forward<double>(double*, const double*, long);
template void gelu_backward<float>(float*, const float*, const float*, long);
template void gelu_backward<double>(double*, const double*, const double*, long);

}  // namespace agpt::cpu
