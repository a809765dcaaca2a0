#include "kernels/cpu/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace agpt::cpu {

namespace {
// dweight is reduced over fixed blocks of rows, then the block sums are added in order, so the
// result does not depend on the number of threads.
constexpr int kRowBlock = 64;
}  // namespace

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, T eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const T* x = inp + static_cast<long>(i) * C;
        T* o = out + static_cast<long>(i) * C;
        T ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < C; j++) ss += x[j] * x[j];
        const T r = T(1) / std::sqrt(ss / T(C) + eps);
        rstd[i] = r;
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = x[j] * r * weight[j];
    }
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int N, int C) {
    const int n_blocks = (N + kRowBlock - 1) / kRowBlock;
    std::vector<T> partial(static_cast<std::size_t>(n_blocks) * C, T(0));
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        T* dw = partial.data() + static_cast<long>(blk) * C;
        const int end = std::min(N, (blk + 1) * kRowBlock);
        for (int i = blk * kRowBlock; i < end; i++) {
            const T* x = inp + static_cast<long>(i) * C;
            const T* g = dout + static_cast<long>(i) * C;
            T* dx = dinp + static_cast<long>(i) * C;
            const T r = rstd[i];
            T dot = 0;  // Σ g·w·x
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < C; j++) dot += g[j] * weight[j] * x[j];
            const T coef = dot * r * r * r / T(C);
#pragma omp simd
            for (int j = 0; j < C; j++) {
                dx[j] += r * weight[j] * g[j] - coef * x[j];
                dw[j] += g[j] * x[j] * r;
            }
        }
    }
    for (int blk = 0; blk < n_blocks; blk++) {
        const T* dw = partial.data() + static_cast<long>(blk) * C;
#pragma omp simd
        for (int j = 0; j < C; j++) dweight[j] += dw[j];
    }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, float);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int, int,
                                      double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*,
                                      const float*, int, int);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*,
                                       const double*, const double*, int, int);

}  // namespace agpt::cpu
