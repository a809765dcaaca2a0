#include "kernels/cpu/rope.h"

#include <cmath>

namespace agpt::cpu {

template <typename T>
void rope_tables(T* cos_table, T* sin_table, int T_len, int hd, double theta) {
    const int half = hd / 2;
    // Angles in double: at position 8192 a float angle would already be off by ~1e-3 rad.
    for (int t = 0; t < T_len; t++)
        for (int i = 0; i < half; i++) {
            const double inv_freq = std::pow(theta, -2.0 * i / hd);
            const double angle = t * inv_freq;
            cos_table[static_cast<long>(t) * half + i] = static_cast<T>(std::cos(angle));
            sin_table[static_cast<long>(t) * half + i] = static_cast<T>(std::sin(angle));
        }
}

namespace {

// sign = +1 rotates forward, -1 applies the inverse rotation.
template <typename T>
void rotate(T* x, const T* cos_table, const T* sin_table, int B, int T_len, int n_heads, int hd,
            int row_stride, T sign) {
    const int half = hd / 2;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < static_cast<long>(B) * T_len; r++) {
        const long t = r % T_len;
        const T* c = cos_table + t * half;
        const T* s = sin_table + t * half;
        for (int h = 0; h < n_heads; h++) {
            T* a = x + r * row_stride + static_cast<long>(h) * hd;
            T* b = a + half;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                const T a0 = a[i], b0 = b[i], si = sign * s[i];
                a[i] = a0 * c[i] - b0 * si;
                b[i] = b0 * c[i] + a0 * si;
            }
        }
    }
}

}  // namespace

template <typename T>
void rope_forward(T* x, const T* cos_table, const T* sin_table, int B, int T_len, int n_heads,
                  int hd, int row_stride) {
    rotate(x, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, T(1));
}

template <typename T>
void rope_backward(T* dx, const T* cos_table, const T* sin_table, int B, int T_len, int n_heads,
                   int hd, int row_stride) {
    rotate(dx, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, T(-1));
}

template void rope_tables<float>(float*, float*, int, int, double);
template void rope_tables<double>(double*, double*, int, int, double);
template void rope_forward<float>(float*, const float*, const float*, int, int, int, int, int);
template void rope_forward<double>(double*, const double*, const double*, int, int, int, int, int);
template void rope_backward<float>(float*, const float*, const float*, int, int, int, int, int);
template void rope_backward<double>(double*, const double*, const double*, int, int, int, int, int);

}  // namespace agpt::cpu
