#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mano.h"

namespace agpt::cuda {

namespace {

constexpr int kThreads = 256;
// ‖T‖² from the sums is trusted above this share of Σ m² (optim/mano.cpp's kCancellation).
constexpr double kCancellation = 1e-8;

struct Sums {
    double w2, mw, m2;
};

__device__ __forceinline__ float direction(float g, float buf_new, const ManoStep& s) {
    return s.nesterov ? __fadd_rn(g, __fmul_rn(s.momentum, buf_new)) : buf_new;
}

__device__ __forceinline__ float kappa(const Sums& a, const ManoStep& s) {
    if (s.v2) return static_cast<float>(a.mw);
    const double d = fmax(sqrt(a.w2), s.eps);
    return static_cast<float>(a.mw / d / d);
}

// ‖T‖² from the sums, or a negative value when they cancel.
__device__ __forceinline__ double tnorm2(const Sums& a, float k) {
    const double kd = k;
    const double t2 = a.m2 - 2.0 * kd * a.mw + kd * kd * a.w2;
    return t2 > kCancellation * a.m2 ? t2 : -1.0;
}

__device__ __forceinline__ float step_scale(double t2, const ManoStep& s) {
    const double tn = sqrt(t2);
    return static_cast<float>(s.scale / (s.v2 ? tn + s.eps : fmax(tn, s.eps)));
}

__device__ __forceinline__ float tangent(float g, float b, float w, float k, const ManoStep& s) {
    return __fsub_rn(direction(g, b, s), __fmul_rn(k, w));
}

__device__ __forceinline__ float updated(float w, float t, float step, const ManoStep& s) {
    return __fsub_rn(__fmul_rn(w, s.decay), __fmul_rn(step, t));
}

// Sums over the block in a fixed tree; every thread gets them. smem: 3·kThreads doubles.
__device__ Sums block_sums(Sums v, double* smem) {
    smem[threadIdx.x] = v.w2;
    smem[kThreads + threadIdx.x] = v.mw;
    smem[2 * kThreads + threadIdx.x] = v.m2;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
        if (static_cast<int>(threadIdx.x) < half)
            for (int q = 0; q < 3; ++q)
                smem[q * kThreads + threadIdx.x] += smem[q * kThreads + threadIdx.x + half];
        __syncthreads();
    }
    const Sums total = {smem[0], smem[kThreads], smem[2 * kThreads]};
    __syncthreads();  // smem is free again
    return total;
}

// One block per row.
__global__ void mano_rows_kernel(float* W, const float* G, float* buf, int C, ManoStep s,
                                 __nv_bfloat16* W_bf16) {
    __shared__ double smem[3 * kThreads];
    const std::size_t row = static_cast<std::size_t>(blockIdx.x) * C;
    float* w = W + row;
    const float* g = G + row;
    float* b = buf + row;
    Sums acc = {0.0, 0.0, 0.0};
    for (int j = threadIdx.x; j < C; j += kThreads) {
        const float bn = __fadd_rn(__fmul_rn(s.momentum, b[j]), g[j]);
        b[j] = bn;
        const double m = direction(g[j], bn, s), x = w[j];
        acc.w2 = fma(x, x, acc.w2);
        acc.mw = fma(m, x, acc.mw);
        acc.m2 = fma(m, m, acc.m2);
    }
    const Sums sum = block_sums(acc, smem);
    const float k = kappa(sum, s);
    double t2 = tnorm2(sum, k);
    if (t2 < 0.0) {  // the same for every thread of the block
        Sums sweep = {0.0, 0.0, 0.0};
        for (int j = threadIdx.x; j < C; j += kThreads) {
            const double t = tangent(g[j], b[j], w[j], k, s);
            sweep.m2 += t * t;
        }
        t2 = block_sums(sweep, smem).m2;
    }
    const float step = step_scale(t2, s);
    for (int j = threadIdx.x; j < C; j += kThreads) {
        const float w_new = updated(w[j], tangent(g[j], b[j], w[j], k, s), step, s);
        w[j] = w_new;
        if (W_bf16) W_bf16[row + j] = __float2bfloat16(w_new);
    }
}

// Columns: three passes. Partial sums over blocks of kColRows rows (kColThreads columns × 8
// row lanes; each lane sums its rows in order, then the lanes in order), the per-column
// coefficients from the blocks' sums in order, then the update, one thread per element.
constexpr int kColThreads = 32;
constexpr int kRowLanes = 8;
constexpr int kColRows = 64;

// Block: kColThreads columns × kRowLanes row lanes (thread = lane·kColThreads + column).
__global__ void mano_cols_partials_kernel(const float* W, const float* G, float* buf, int R, int C,
                                          ManoStep s, double* partial) {
    __shared__ double smem[3][kRowLanes][kColThreads];
    const int col = threadIdx.x % kColThreads, lane = threadIdx.x / kColThreads;
    const int j = blockIdx.x * kColThreads + col;
    const int r0 = blockIdx.y * kColRows, r1 = min(R, r0 + kColRows);
    Sums acc = {0.0, 0.0, 0.0};
    if (j < C)
        for (int i = r0 + lane; i < r1; i += kRowLanes) {
            const std::size_t e = static_cast<std::size_t>(i) * C + j;
            const float bn = __fadd_rn(__fmul_rn(s.momentum, buf[e]), G[e]);
            buf[e] = bn;
            const double m = direction(G[e], bn, s), x = W[e];
            acc.w2 = fma(x, x, acc.w2);
            acc.mw = fma(m, x, acc.mw);
            acc.m2 = fma(m, m, acc.m2);
        }
    smem[0][lane][col] = acc.w2;
    smem[1][lane][col] = acc.mw;
    smem[2][lane][col] = acc.m2;
    __syncthreads();
    if (lane >= 3 || j >= C) return;  // lanes 0..2 add up Σ W², Σ m·W, Σ m²
    double total = 0.0;
    for (int l = 0; l < kRowLanes; ++l) total += smem[lane][l][col];
    partial[(static_cast<std::size_t>(blockIdx.y) * 3 + lane) * C + j] = total;
}

// coef[j] = κ, coef[C + j] = the step scale of column j.
__global__ void mano_cols_coefficients_kernel(const float* W, const float* G, const float* buf,
                                              int R, int C, ManoStep s, const double* partial,
                                              int row_blocks, float* coef) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= C) return;
    Sums sum = {0.0, 0.0, 0.0};
    for (int b = 0; b < row_blocks; ++b) {
        const double* p = partial + static_cast<std::size_t>(b) * 3 * C;
        sum.w2 += p[j];
        sum.mw += p[C + j];
        sum.m2 += p[2 * static_cast<std::size_t>(C) + j];
    }
    const float k = kappa(sum, s);
    double t2 = tnorm2(sum, k);
    if (t2 < 0.0) {  // rare: T nearly cancels; sweep the column as the CPU does
        t2 = 0.0;
        for (int i = 0; i < R; ++i) {
            const std::size_t e = static_cast<std::size_t>(i) * C + j;
            const double t = tangent(G[e], buf[e], W[e], k, s);
            t2 += t * t;
        }
    }
    coef[j] = k;
    coef[C + j] = step_scale(t2, s);
}

__global__ void mano_cols_apply_kernel(float* W, const float* G, const float* buf, std::size_t n,
                                       int C, ManoStep s, const float* coef,
                                       __nv_bfloat16* W_bf16) {
    const std::size_t e = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= n) return;
    const int j = static_cast<int>(e % C);
    const float w_new = updated(W[e], tangent(G[e], buf[e], W[e], coef[j], s), coef[C + j], s);
    W[e] = w_new;
    if (W_bf16) W_bf16[e] = __float2bfloat16(w_new);
}

std::size_t align256(std::size_t bytes) {
    return (bytes + 255) / 256 * 256;
}

int row_blocks(int R) {
    return (R + kColRows - 1) / kColRows;
}

}  // namespace

std::size_t mano_scratch_bytes(int R, int C) {
    return align256(static_cast<std::size_t>(row_blocks(R)) * 3 * C * sizeof(double)) +
           align256(static_cast<std::size_t>(C) * 2 * sizeof(float));
}

void mano_update(float* W, const float* G, float* buf, int R, int C, int axis, const ManoStep& s,
                 bf16* W_bf16, void* scratch, cudaStream_t stream) {
    if (R <= 0 || C <= 0) return;
    if (axis == 1) {
        mano_rows_kernel<<<R, kThreads, 0, stream>>>(W, G, buf, C, s, W_bf16);
        AGPT_CUDA_CHECK_LAUNCH();
        return;
    }
    auto* partial = static_cast<double*>(scratch);
    auto* coef = reinterpret_cast<float*>(
        static_cast<char*>(scratch) +
        align256(static_cast<std::size_t>(row_blocks(R)) * 3 * C * sizeof(double)));
    const dim3 grid(static_cast<unsigned>(ceil_div(C, kColThreads)),
                    static_cast<unsigned>(row_blocks(R)));
    mano_cols_partials_kernel<<<grid, kColThreads * kRowLanes, 0, stream>>>(W, G, buf, R, C, s,
                                                                            partial);
    AGPT_CUDA_CHECK_LAUNCH();
    mano_cols_coefficients_kernel<<<ceil_div(C, kThreads), kThreads, 0, stream>>>(
        W, G, buf, R, C, s, partial, row_blocks(R), coef);
    AGPT_CUDA_CHECK_LAUNCH();
    const std::size_t n = static_cast<std::size_t>(R) * C;
    mano_cols_apply_kernel<<<ceil_div(static_cast<long>(n), kThreads), kThreads, 0, stream>>>(
        W, G, buf, n, C, s, coef, W_bf16);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace agpt::cuda
