#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>

namespace agpt::cpu {

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        std::memcpy(out + static_cast<long>(i) * C, table + static_cast<long>(tokens[i]) * C,
                    sizeof(T) * C);
}

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* tokens, int N, int C) {
    // Threads own disjoint column slices and walk the tokens in order: no races, and the
    // summation order per element is fixed.
    constexpr int kCols = 32;
    const int n_slices = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n_slices; s++) {
        const int c0 = s * kCols, c1 = std::min(C, c0 + kCols);
        for (int i = 0; i < N; i++) {
            T* d = dtable + static_cast<long>(tokens[i]) * C;
            const T* g = dout + static_cast<long>(i) * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int, int);
template void embedding_forward<double>(double*, const int32_t*, const double*, int, int);
template void embedding_backward<float>(float*, const float*, const int32_t*, int, int);
template void embedding_backward<double>(double*, const double*, const int32_t*, int, int);

}  // namespace agpt::cpu
