#include "kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace agpt::cpu {

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int N, int C) {
    embedding_forward_rows(out, tokens, table, N, C, 0, std::numeric_limits<int>::max());
}

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* tokens, int N, int C) {
    embedding_backward_rows(dtable, dout, tokens, N, C, 0, std::numeric_limits<int>::max());
}

template <typename T>
void embedding_forward_rows(T* out, const int32_t* tokens, const T* table, int N, int C, int first,
                            int rows) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        T* o = out + static_cast<long>(i) * C;
        const long row = static_cast<long>(tokens[i]) - first;
        if (row >= 0 && row < rows)
            std::memcpy(o, table + row * C, sizeof(T) * C);
        else
            std::fill(o, o + C, T(0));
    }
}

template <typename T>
void embedding_backward_rows(T* dtable, const T* dout, const int32_t* tokens, int N, int C,
                             int first, int rows) {
    // Threads own disjoint column slices and walk the tokens in order: no races, and the
    // summation order per element is fixed.
    constexpr int kCols = 32;
    const int n_slices = (C + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n_slices; s++) {
        const int c0 = s * kCols, c1 = std::min(C, c0 + kCols);
        for (int i = 0; i < N; i++) {
            const long row = static_cast<long>(tokens[i]) - first;
            if (row < 0 || row >= rows) continue;
            T* d = dtable + row * C;
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
template void embedding_forward_rows<float>(float*, const int32_t*, const float*, int, int, int,
                                            int);
template void embedding_backward_rows<float>(float*, const float*, const int32_t*, int, int, int,
                                             int);

}  // namespace agpt::cpu
