#include "kernels/cpu/layernorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace agpt::cpu {

namespace {
// Rows per block of the dweight/dbias reduction (see rmsnorm.cpp).
constexpr int kRowBlock = 64;
}  // namespace

template <typename T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int N, int C, T eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const T* x = inp + static_cast<long>(i) * C;
        T* o = out + static_cast<long>(i) * C;
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < C; j++) sum += x[j];
        const T m = sum / T(C);
        T ss = 0;  // two passes: Σ(x − m)² does not cancel the way Σx² − C·m² does
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < C; j++) ss += (x[j] - m) * (x[j] - m);
        const T r = T(1) / std::sqrt(ss / T(C) + eps);
        mean[i] = m;
        rstd[i] = r;
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = (x[j] - m) * r * weight[j] + bias[j];
    }
}

template <typename T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int N, int C) {
    // With x̂ = (x − m)·r and g = dout·weight:
    //   dx = r · (g − mean(g) − x̂ · mean(g ⊙ x̂)),  dweight += dout ⊙ x̂,  dbias += dout.
    const int n_blocks = (N + kRowBlock - 1) / kRowBlock;
    std::vector<T> partial(static_cast<std::size_t>(n_blocks) * 2 * C, T(0));
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        T* dw = partial.data() + static_cast<long>(blk) * 2 * C;
        T* db = dw + C;
        const int end = std::min(N, (blk + 1) * kRowBlock);
        for (int i = blk * kRowBlock; i < end; i++) {
            const T* x = inp + static_cast<long>(i) * C;
            const T* d = dout + static_cast<long>(i) * C;
            T* dx = dinp + static_cast<long>(i) * C;
            const T m = mean[i], r = rstd[i];
            T g_sum = 0, gx_sum = 0;
#pragma omp simd reduction(+ : g_sum, gx_sum)
            for (int j = 0; j < C; j++) {
                const T g = d[j] * weight[j];
                g_sum += g;
                gx_sum += g * (x[j] - m) * r;
            }
            const T g_mean = g_sum / T(C), gx_mean = gx_sum / T(C);
#pragma omp simd
            for (int j = 0; j < C; j++) {
                const T xhat = (x[j] - m) * r;
                dx[j] += r * (d[j] * weight[j] - g_mean - xhat * gx_mean);
                dw[j] += d[j] * xhat;
                db[j] += d[j];
            }
        }
    }
    for (int blk = 0; blk < n_blocks; blk++) {
        const T* dw = partial.data() + static_cast<long>(blk) * 2 * C;
        const T* db = dw + C;
#pragma omp simd
        for (int j = 0; j < C; j++) {
            dweight[j] += dw[j];
            dbias[j] += db[j];
        }
    }
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*,
                                       const float*, int, int, float);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*,
                                        const double*, int, int, double);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int, int);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*,
                                         const double*, const double*, const double*, int, int);

}  // namespace agpt::cpu
