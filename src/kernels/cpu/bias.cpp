#include "kernels/cpu/bias.h"

#include <algorithm>

namespace agpt::cpu {

template <typename T>
void bias_forward(T* out, const T* bias, int N, int OC, bool accumulate) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        T* o = out + static_cast<long>(i) * OC;
        if (accumulate) {
#pragma omp simd
            for (int j = 0; j < OC; j++) o[j] += bias[j];
        } else {
#pragma omp simd
            for (int j = 0; j < OC; j++) o[j] = bias[j];
        }
    }
}

template <typename T>
void bias_backward(T* dbias, const T* dout, int N, int OC) {
    constexpr int kCols = 64;
    const int n_slices = (OC + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n_slices; s++) {
        const int c0 = s * kCols, c1 = std::min(OC, c0 + kCols);
        T acc[kCols] = {};
        for (int i = 0; i < N; i++) {
            const T* d = dout + static_cast<long>(i) * OC;
#pragma omp simd
            for (int c = c0; c < c1; c++) acc[c - c0] += d[c];
        }
        for (int c = c0; c < c1; c++) dbias[c] += acc[c - c0];
    }
}

template void bias_forward<float>(float*, const float*, int, int, bool);
template void bias_forward<double>(double*, const double*, int, int, bool);
template void bias_backward<float>(float*, const float*, int, int);
template void bias_backward<double>(double*, const double*, int, int);

}  // namespace agpt::cpu
