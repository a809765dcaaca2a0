#include <cmath>
#include <utility>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/newton_schulz.h"

namespace agpt::cuda {

namespace {

using detail::from_float;
using detail::to_float;

constexpr int kThreads = 256;
constexpr int kNormBlock = 4096;  // elements per partial sum of ‖G‖²

std::size_t align256(std::size_t bytes) {
    return (bytes + 255) / 256 * 256;
}

// The scratch regions, in order: partial sums, the scale, X, Y (rows·cols), Gram and
// polynomial (r·r, r = min(rows, cols)).
struct Layout {
    std::size_t partials, scale, x, y, gram, poly, total;
    int blocks;
};

Layout layout(int rows, int cols, bool bf16_gemms) {
    const std::size_t es = bf16_gemms ? sizeof(bf16) : sizeof(float);
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    const std::size_t r = static_cast<std::size_t>(rows < cols ? rows : cols);
    Layout l;
    l.blocks = static_cast<int>((n + kNormBlock - 1) / kNormBlock);
    l.partials = 0;
    l.scale = align256(l.blocks * sizeof(double));
    l.x = l.scale + align256(sizeof(double));
    l.y = l.x + align256(n * es);
    l.gram = l.y + align256(n * es);
    l.poly = l.gram + align256(r * r * es);
    l.total = l.poly + align256(r * r * es);
    return l;
}

__device__ __forceinline__ float round_bf16(float x) {
    return __bfloat162float(__float2bfloat16(x));
}

// Sum over the block in a fixed tree; thread 0 gets it. blockDim.x == kThreads.
__device__ double block_sum_double(double v, double* smem) {
    smem[threadIdx.x] = v;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
        if (static_cast<int>(threadIdx.x) < half) smem[threadIdx.x] += smem[threadIdx.x + half];
        __syncthreads();
    }
    return smem[0];
}

// partials[b] = Σ G[i]² over block b's kNormBlock elements (G rounded to bf16 first in bf16).
template <bool kBf16>
__global__ void sum_squares_kernel(const float* G, std::size_t n, double* partials) {
    __shared__ double smem[kThreads];
    const std::size_t begin = static_cast<std::size_t>(blockIdx.x) * kNormBlock;
    const std::size_t end = begin + kNormBlock < n ? begin + kNormBlock : n;
    double acc = 0.0;
    for (std::size_t i = begin + threadIdx.x; i < end; i += kThreads) {
        const double g = kBf16 ? round_bf16(G[i]) : G[i];
        acc += g * g;
    }
    const double total = block_sum_double(acc, smem);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// scale = 1 / max(‖G‖, eps) from the partials, one block. In bf16 the norm is rounded to bf16
// as torch computes it, unless that overflows (then the unrounded norm, as on the CPU).
template <bool kBf16>
__global__ void inverse_norm_kernel(const double* partials, int blocks, double eps, double* scale) {
    __shared__ double smem[kThreads];
    double acc = 0.0;
    for (int b = threadIdx.x; b < blocks; b += kThreads) acc += partials[b];
    const double total = block_sum_double(acc, smem);
    if (threadIdx.x != 0) return;
    double norm = sqrt(total);
    if (kBf16) {
        const double rounded = round_bf16(static_cast<float>(norm));
        if (isfinite(rounded)) norm = rounded;
    }
    *scale = 1.0 / (norm > eps ? norm : eps);
}

// X = G·scale, transposed when G is tall (rows > cols): X is (r, c) with r <= c.
template <typename T>
__global__ void scale_kernel(const float* G, T* x, int rows, int cols, const double* scale) {
    const std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    if (idx >= n) return;
    constexpr bool kBf16 = sizeof(T) == 2;
    const float g = kBf16 ? round_bf16(G[idx]) : G[idx];
    const T v = from_float<T>(static_cast<float>(static_cast<double>(g) * *scale));
    if (rows > cols) {
        const std::size_t i = idx / cols, j = idx % cols;
        x[j * rows + i] = v;
    } else {
        x[idx] = v;
    }
}

// out (rows, cols) = X, or Xᵀ when G was tall.
template <typename T>
__global__ void unscale_kernel(const T* x, float* out, int rows, int cols) {
    const std::size_t idx = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    if (idx >= n) return;
    if (rows > cols) {
        const std::size_t i = idx / cols, j = idx % cols;
        out[idx] = to_float(x[j * rows + i]);
    } else {
        out[idx] = to_float(x[idx]);
    }
}

template <typename T>
void run(Blas& blas, const float* G, float* out, int rows, int cols,
         const cpu::NsCoefficients& coef, int steps, double eps, void* scratch) {
    constexpr bool kBf16 = sizeof(T) == 2;
    const cudaStream_t s = blas.stream();
    const Layout l = layout(rows, cols, kBf16);
    char* base = static_cast<char*>(scratch);
    double* partials = reinterpret_cast<double*>(base + l.partials);
    double* scale = reinterpret_cast<double*>(base + l.scale);
    T* x = reinterpret_cast<T*>(base + l.x);
    T* y = reinterpret_cast<T*>(base + l.y);
    T* gram = reinterpret_cast<T*>(base + l.gram);
    T* poly = reinterpret_cast<T*>(base + l.poly);
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    const int r = rows < cols ? rows : cols, c = rows < cols ? cols : rows;
    const std::size_t rr = static_cast<std::size_t>(r) * r;
    const unsigned grid = static_cast<unsigned>(ceil_div(static_cast<long>(n), kThreads));

    sum_squares_kernel<kBf16><<<l.blocks, kThreads, 0, s>>>(G, n, partials);
    AGPT_CUDA_CHECK_LAUNCH();
    const double eps_t =
        kBf16 ? static_cast<double>(__bfloat162float(__float2bfloat16(static_cast<float>(eps))))
              : eps;
    inverse_norm_kernel<kBf16><<<1, kThreads, 0, s>>>(partials, l.blocks, eps_t, scale);
    AGPT_CUDA_CHECK_LAUNCH();
    scale_kernel<T><<<grid, kThreads, 0, s>>>(G, x, rows, cols, scale);
    AGPT_CUDA_CHECK_LAUNCH();

    const float a = static_cast<float>(coef.a), b = static_cast<float>(coef.b),
                cc = static_cast<float>(coef.c);
    for (int it = 0; it < steps; ++it) {
        // A = X·Xᵀ
        gemm<T, T>(blas, false, true, r, r, c, 1.0f, x, c, x, c, 0.0f, gram, r);
        // B = b·A + c·A·A, one rounding (torch.addmm)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(poly, gram, rr * sizeof(T), cudaMemcpyDeviceToDevice, s));
        gemm<T, T>(blas, false, false, r, r, r, cc, gram, r, gram, r, b, poly, r);
        // X = a·X + B·X
        AGPT_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(T), cudaMemcpyDeviceToDevice, s));
        gemm<T, T>(blas, false, false, r, c, r, 1.0f, poly, r, x, c, a, y, c);
        std::swap(x, y);
    }
    unscale_kernel<T><<<grid, kThreads, 0, s>>>(x, out, rows, cols);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace

std::size_t newton_schulz_scratch_bytes(int rows, int cols, bool bf16_gemms) {
    return layout(rows, cols, bf16_gemms).total;
}

void newton_schulz(Blas& blas, const float* G, float* out, int rows, int cols,
                   const cpu::NsCoefficients& coef, int steps, double eps, bool bf16_gemms,
                   void* scratch) {
    if (rows <= 0 || cols <= 0 || steps < 0) return;  // the CPU optimizer checked its inputs
    if (bf16_gemms)
        run<bf16>(blas, G, out, rows, cols, coef, steps, eps, scratch);
    else
        run<float>(blas, G, out, rows, cols, coef, steps, eps, scratch);
}

}  // namespace agpt::cuda
