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

// Both layouts go through these: row r = n·heads + h of C elements at base + n·stride + h·C.
// rmsnorm_forward/backward are the heads = 1, stride = C case.
template <typename T>
void rmsnorm_heads_forward(T* out, long out_stride, T* rstd, const T* inp, long in_stride,
                           const T* weight, int N, int heads, int C, T eps) {
    const long rows = static_cast<long>(N) * heads;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const long n = r / heads, h = r % heads;
        const T* x = inp + n * in_stride + h * C;
        T* o = out + n * out_stride + h * C;
        T ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < C; j++) ss += x[j] * x[j];
        const T rs = T(1) / std::sqrt(ss / T(C) + eps);
        rstd[r] = rs;
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = x[j] * rs * weight[j];
    }
}

template <typename T>
void rmsnorm_heads_backward(T* dinp, long dinp_stride, T* dweight, const T* dout, long dout_stride,
                            const T* inp, long in_stride, const T* weight, const T* rstd, int N,
                            int heads, int C) {
    const long rows = static_cast<long>(N) * heads;
    const long n_blocks = (rows + kRowBlock - 1) / kRowBlock;
    std::vector<T> partial(static_cast<std::size_t>(n_blocks) * C, T(0));
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < n_blocks; blk++) {
        T* dw = partial.data() + blk * C;
        const long end = std::min(rows, (blk + 1) * kRowBlock);
        for (long r = blk * kRowBlock; r < end; r++) {
            const long n = r / heads, h = r % heads;
            const T* x = inp + n * in_stride + h * C;
            const T* g = dout + n * dout_stride + h * C;
            T* dx = dinp + n * dinp_stride + h * C;
            const T rs = rstd[r];
            T dot = 0;  // Σ g·w·x
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < C; j++) dot += g[j] * weight[j] * x[j];
            const T coef = dot * rs * rs * rs / T(C);
#pragma omp simd
            for (int j = 0; j < C; j++) {
                dx[j] += rs * weight[j] * g[j] - coef * x[j];
                dw[j] += g[j] * x[j] * rs;
            }
        }
    }
    for (long blk = 0; blk < n_blocks; blk++) {
        const T* dw = partial.data() + blk * C;
#pragma omp simd
        for (int j = 0; j < C; j++) dweight[j] += dw[j];
    }
}

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, T eps) {
    rmsnorm_heads_forward<T>(out, C, rstd, inp, C, weight, N, 1, C, eps);
}

template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int N, int C) {
    rmsnorm_heads_backward<T>(dinp, C, dweight, dout, C, inp, C, weight, rstd, N, 1, C);
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, float);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int, int,
                                      double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*,
                                      const float*, int, int);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*,
                                       const double*, const double*, int, int);
template void rmsnorm_heads_forward<float>(float*, long, float*, const float*, long, const float*,
                                           int, int, int, float);
template void rmsnorm_heads_forward<double>(double*, long, double*, const double*, long,
                                            const double*, int, int, int, double);
template void rmsnorm_heads_backward<float>(float*, long, float*, const float*, long, const float*,
                                            long, const float*, const float*, int, int, int);
template void rmsnorm_heads_backward<double>(double*, long, double*, const double*, long,
                                             const double*, long, const double*, const double*, int,
                                             int, int);

}  // namespace agpt::cpu
