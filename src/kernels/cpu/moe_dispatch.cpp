#include "kernels/cpu/moe_dispatch.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace agpt::cpu {

void moe_plan(MoePlan& plan, const int* experts, int N, int k, int E) {
    plan.n_experts = E;
    const long M = static_cast<long>(N) * k;
    std::fill(plan.offsets, plan.offsets + E + 1, 0);
    for (long i = 0; i < M; i++) plan.offsets[experts[i] + 1]++;
    for (int e = 0; e < E; e++) plan.offsets[e + 1] += plan.offsets[e];
    // Counting sort: the cursor of each expert starts at its block's first row.
    std::vector<int> cursor(plan.offsets, plan.offsets + E);
    for (long i = 0; i < M; i++) {
        const int r = cursor[experts[i]]++;
        plan.row_token[r] = static_cast<int>(i / k);
        plan.slot_row[i] = r;
    }
}

template <typename T>
void moe_gather(T* xs, const T* x, const MoePlan& plan, int N, int k, int D) {
    const long M = static_cast<long>(N) * k;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < M; r++)
        std::memcpy(xs + r * D, x + static_cast<long>(plan.row_token[r]) * D, sizeof(T) * D);
}

template <typename T>
void moe_gather_backward(T* dx, const T* dxs, const MoePlan& plan, int N, int k, int D) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        T* d = dx + static_cast<long>(n) * D;
        for (int j = 0; j < k; j++) {
            const T* src = dxs + static_cast<long>(plan.slot_row[static_cast<long>(n) * k + j]) * D;
#pragma omp simd
            for (int c = 0; c < D; c++) d[c] += src[c];
        }
    }
}

template <typename T>
void grouped_matmul_forward(T* out, int ldo, const T* inp, const T* weight, const MoePlan& plan,
                            int C, int OC) {
    for (int e = 0; e < plan.n_experts; e++) {
        const int begin = plan.offsets[e], rows = plan.offsets[e + 1] - begin;
        if (rows == 0) continue;
        gemm<T>(false, true, rows, OC, C, T(1), inp + static_cast<long>(begin) * C, C,
                weight + static_cast<long>(e) * OC * C, C, T(0),
                out + static_cast<long>(begin) * ldo, ldo);
    }
}

template <typename T>
void grouped_matmul_backward(T* dinp, T* dweight, const T* dout, int ldo, const T* inp,
                             const T* weight, const MoePlan& plan, int C, int OC) {
    for (int e = 0; e < plan.n_experts; e++) {
        const int begin = plan.offsets[e], rows = plan.offsets[e + 1] - begin;
        if (rows == 0) continue;
        const T* g = dout + static_cast<long>(begin) * ldo;
        const long wo = static_cast<long>(e) * OC * C;
        if (dinp)
            gemm<T>(false, false, rows, C, OC, T(1), g, ldo, weight + wo, C, T(1),
                    dinp + static_cast<long>(begin) * C, C);
        if (dweight)
            gemm<T>(true, false, OC, C, rows, T(1), g, ldo, inp + static_cast<long>(begin) * C, C,
                    T(1), dweight + wo, C);
    }
}

template <typename T>
void moe_combine(T* out, const T* ys, const T* gates, const MoePlan& plan, int N, int k, int D) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        T* o = out + static_cast<long>(n) * D;
        for (int j = 0; j < k; j++) {
            const long slot = static_cast<long>(n) * k + j;
            const T g = gates[slot];
            const T* y = ys + static_cast<long>(plan.slot_row[slot]) * D;
#pragma omp simd
            for (int c = 0; c < D; c++) o[c] += g * y[c];
        }
    }
}

template <typename T>
void moe_combine_backward(T* dys, T* dgates, const T* dout, const T* ys, const T* gates,
                          const MoePlan& plan, int N, int k, int D) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const T* d = dout + static_cast<long>(n) * D;
        for (int j = 0; j < k; j++) {
            const long slot = static_cast<long>(n) * k + j;
            const long row = plan.slot_row[slot];
            if (dys) {
                T* dy = dys + row * D;
                const T g = gates[slot];
#pragma omp simd
                for (int c = 0; c < D; c++) dy[c] = g * d[c];
            }
            if (dgates) {
                const T* y = ys + row * D;
                T dot = 0;
                for (int c = 0; c < D; c++) dot += d[c] * y[c];
                dgates[slot] += dot;
            }
        }
    }
}

#define AGPT_MOE_DISPATCH(T)                                                                    \
    template void moe_gather<T>(T*, const T*, const MoePlan&, int, int, int);                   \
    template void moe_gather_backward<T>(T*, const T*, const MoePlan&, int, int, int);          \
    template void grouped_matmul_forward<T>(T*, int, const T*, const T*, const MoePlan&, int,   \
                                            int);                                               \
    template void grouped_matmul_backward<T>(T*, T*, const T*, int, const T*, const T*,         \
                                             const MoePlan&, int, int);                         \
    template void moe_combine<T>(T*, const T*, const T*, const MoePlan&, int, int, int);        \
    template void moe_combine_backward<T>(T*, T*, const T*, const T*, const T*, const MoePlan&, \
                                          int, int, int);
AGPT_MOE_DISPATCH(float)
AGPT_MOE_DISPATCH(double)
#undef AGPT_MOE_DISPATCH

}  // namespace agpt::cpu
