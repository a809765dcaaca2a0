#include "kernels/cpu/attention_decode.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/cpu/softcap.h"

namespace agpt::cpu {

template <typename T>
void attention_decode(T* out, const T* q, int q_stride, const T* k, const T* v, int kv_stride,
                      int M, int past, int H, int KV, int hd, T softcap) {
    const int group = H / KV;
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
    // Two passes (max, then exp and sum) rather than an online softmax: one query's scores
    // fit in a small buffer, and the plain form is the easiest to check against the tiled
    // forward.
    // A decode step is a few microseconds of work; a thread team costs more than it saves
    // until a query row meets a long cache.
    const long work = static_cast<long>(M) * H * (past + M) * hd;
#pragma omp parallel if (work > (1L << 18))
    {
        std::vector<T> p(static_cast<std::size_t>(past + M));
#pragma omp for collapse(2) schedule(static)
        for (int m = 0; m < M; m++) {
            for (int h = 0; h < H; h++) {
                const T* qh = q + static_cast<std::size_t>(m) * q_stride + h * hd;
                const int kvh = h / group;
                const int L = past + m + 1;
                T mx = -INFINITY;
                for (int t = 0; t < L; t++) {
                    const T* kt = k + static_cast<std::size_t>(t) * kv_stride + kvh * hd;
                    T s = 0;
                    for (int i = 0; i < hd; i++) s += qh[i] * kt[i];
                    p[t] = softcap > T(0) ? softcap_vec(s * scale, softcap) : s * scale;
                    mx = std::max(mx, p[t]);
                }
                T sum = 0;
                for (int t = 0; t < L; t++) {
                    p[t] = std::exp(p[t] - mx);
                    sum += p[t];
                }
                T* o = out + (static_cast<std::size_t>(m) * H + h) * hd;
                std::fill(o, o + hd, T(0));
                for (int t = 0; t < L; t++) {
                    const T* vt = v + static_cast<std::size_t>(t) * kv_stride + kvh * hd;
                    const T w = p[t];
                    for (int i = 0; i < hd; i++) o[i] += w * vt[i];
                }
                const T inv = T(1) / sum;
                for (int i = 0; i < hd; i++) o[i] *= inv;
            }
        }
    }
}

template void attention_decode<float>(float*, const float*, int, const float*, const float*, int,
                                      int, int, int, int, int, float);
template void attention_decode<double>(double*, const double*, int, const double*, const double*,
                                       int, int, int, int, int, int, double);

}  // namespace agpt::cpu
