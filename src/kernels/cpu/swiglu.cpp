#include "kernels/cpu/swiglu.h"

#include <cmath>

#include "kernels/cpu/vec_math.h"

namespace agpt::cpu {

template <typename T>
void swiglu_forward(T* out, const T* h13, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const T* a = h13 + static_cast<long>(i) * 2 * F;
        const T* b = a + F;
        T* o = out + static_cast<long>(i) * F;
#pragma omp simd
        for (int j = 0; j < F; j++) o[j] = a[j] / (T(1) + exp_vec(-a[j])) * b[j];
    }
}

template <typename T>
void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const T* a = h13 + static_cast<long>(i) * 2 * F;
        const T* b = a + F;
        const T* g = dout + static_cast<long>(i) * F;
        T* da = dh13 + static_cast<long>(i) * 2 * F;
        T* db = da + F;
#pragma omp simd
        for (int j = 0; j < F; j++) {
            const T sig = T(1) / (T(1) + exp_vec(-a[j]));
            const T silu = a[j] * sig;
            da[j] += g[j] * b[j] * sig * (T(1) + a[j] * (T(1) - sig));
            db[j] += g[j] * silu;
        }
    }
}

template void swiglu_forward<float>(float*, const float*, int, int);
template void swiglu_forward<double>(double*, const double*, int, int);
template void swiglu_backward<float>(float*, const float*, const float*, int, int);
template void swiglu_backward<double>(double*, const double*, const double*, int, int);

}  // namespace agpt::cpu
