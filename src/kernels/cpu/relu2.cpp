#include "kernels/cpu/relu2.h"

#include <algorithm>

namespace agpt::cpu {

template <typename T>
void relu2_forward(T* out, const T* h, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const T* a = h + static_cast<long>(i) * F;
        T* o = out + static_cast<long>(i) * F;
#pragma omp simd
        for (int j = 0; j < F; j++) {
            const T r = std::max(a[j], T(0));
            o[j] = r * r;
        }
    }
}

template <typename T>
void relu2_backward(T* dh, const T* dout, const T* h, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const T* a = h + static_cast<long>(i) * F;
        const T* g = dout + static_cast<long>(i) * F;
        T* d = dh + static_cast<long>(i) * F;
#pragma omp simd
        for (int j = 0; j < F; j++) d[j] += T(2) * std::max(a[j], T(0)) * g[j];
    }
}

template void relu2_forward<float>(float*, const float*, int, int);
template void relu2_forward<double>(double*, const double*, int, int);
template void relu2_backward<float>(float*, const float*, const float*, int, int);
template void relu2_backward<double>(double*, const double*, const double*, int, int);

}  // namespace agpt::cpu
