#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/gemm.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 512;

// The logit the softmax sees: z, or cap·tanh(z/cap).
__device__ __forceinline__ float capped(float z, float cap) {
    return cap > 0.0f ? cap * tanhf(z / cap) : z;
}

// d(cap·tanh(z/cap))/dz from the capped value y: 1 − (y/cap)²; 1 without a cap.
__device__ __forceinline__ float cap_grad(float y, float cap) {
    if (cap <= 0.0f) return 1.0f;
    const float t = y / cap;
    return 1.0f - t * t;
}

// One row's dlogits = grad_scale · (softmax − onehot(t)) (· dy/dz when capped) from its max mx
// and Σexp sum (t: the target's column, or outside [0, V) when not in this row's columns; every
// thread of the block takes its strided columns). Each element is read, then written, by the
// same thread, so d may alias z.
template <typename TD>
__device__ __forceinline__ void softmax_xent_row_grad(TD* d, const float* z, int V, int t, float mx,
                                                      float sum, float target_logit,
                                                      bool has_target, float grad_scale,
                                                      float cap) {
    const float scale = has_target ? grad_scale / sum : 0.0f;
    const float target_grad = has_target ? cap_grad(target_logit, cap) : 0.0f;
    for (int v = threadIdx.x; v < V; v += kThreads) {
        const float y = capped(z[v], cap);
        float g = expf(y - mx) * scale * cap_grad(y, cap);
        if (v == t) g -= grad_scale * target_grad;
        d[v] = from_float<TD>(g);
    }
}

// One block per row of the chunk. logits (n, V) fp32; dlogits (n, V) of type TD (may alias
// logits when TD is float: each element is read and then written by the same thread).
// row_scale (n) or null multiplies grad_scale per row.
template <typename TD>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_kernel(TD* dlogits, float* losses, const float* logits, const int32_t* targets,
                        const float* row_scale, int V, float grad_scale, float cap, bool backward) {
    __shared__ float red[32];
    const long row = blockIdx.x;
    if (row_scale) grad_scale *= row_scale[row];
    const float* z = logits + row * V;
    const int32_t target = targets[row];
    // Read before the backward pass below may overwrite the row (in place).
    const float target_logit = target >= 0 ? capped(z[target], cap) : 0.0f;

    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += kThreads) mx = fmaxf(mx, capped(z[v], cap));
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int v = threadIdx.x; v < V; v += kThreads) sum += expf(capped(z[v], cap) - mx);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) losses[row] = target >= 0 ? logf(sum) + mx - target_logit : 0.0f;
    if (!backward) return;
    softmax_xent_row_grad(dlogits + row * V, z, V, target, mx, sum, target_logit, target >= 0,
                          grad_scale, cap);
}

// The vocabulary-parallel head's three row passes over one rank's logits (n, V) (V: its rows),
// one block per row. stats: row max (chunk) | Σexp (n) | target logit (n), the max and the sums
// each combined over the group between the passes.
__global__ void __launch_bounds__(kThreads)
    vocab_parallel_max_kernel(float* stats, const float* logits, int V, float cap) {
    __shared__ float red[32];
    const long row = blockIdx.x;
    const float* z = logits + row * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += kThreads) mx = fmaxf(mx, capped(z[v], cap));
    mx = block_max(mx, red);
    if (threadIdx.x == 0) stats[row] = mx;
}

__global__ void __launch_bounds__(kThreads)
    vocab_parallel_sums_kernel(float* stats, const float* logits, const int32_t* targets, int V,
                               int vocab_first, int chunk, int n, float cap) {
    __shared__ float red[32];
    const long row = blockIdx.x;
    const float* z = logits + row * V;
    const float mx = stats[row];
    float sum = 0.0f;
    for (int v = threadIdx.x; v < V; v += kThreads) sum += expf(capped(z[v], cap) - mx);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) {
        const int t = targets[row] - vocab_first;
        stats[chunk + row] = sum;
        stats[chunk + n + row] = targets[row] >= 0 && t >= 0 && t < V ? capped(z[t], cap) : 0.0f;
    }
}

// losses from the group's statistics; when backward, dlogits = grad_scale · (softmax − onehot)
// (· dy/dz when capped) over the local columns, as softmax_xent_kernel (may alias logits).
template <typename TD>
__global__ void __launch_bounds__(kThreads)
    vocab_parallel_finish_kernel(TD* dlogits, float* losses, const float* logits,
                                 const float* stats, const int32_t* targets, const float* row_scale,
                                 int V, int vocab_first, int chunk, int n, float grad_scale,
                                 float cap, bool backward) {
    const long row = blockIdx.x;
    if (row_scale) grad_scale *= row_scale[row];
    const int32_t target = targets[row];
    const float mx = stats[row], sum = stats[chunk + row], target_logit = stats[chunk + n + row];
    if (threadIdx.x == 0) losses[row] = target >= 0 ? logf(sum) + mx - target_logit : 0.0f;
    if (!backward) return;
    softmax_xent_row_grad(dlogits + row * V, logits + row * V, V,
                          target >= 0 ? target - vocab_first : -1, mx, sum, target_logit,
                          target >= 0, grad_scale, cap);
}

// One block: per-thread double sums over a fixed stride, then a fixed tree.
__global__ void sum_losses_kernel(double* out, const float* losses, int N) {
    __shared__ double s[256];
    double acc = 0.0;
    for (int i = threadIdx.x; i < N; i += 256) acc += losses[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (static_cast<int>(threadIdx.x) < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = s[0];
}

constexpr std::size_t align256(std::size_t b) {
    return (b + 255) / 256 * 256;
}

// A chunk's dlogits in the head's scratch: the fp32 logits themselves (in place) for fp32,
// after them for bf16.
template <typename T>
T* chunk_dlogits(void* scratch, int chunk, int V) {
    if constexpr (std::is_same_v<T, float>)
        return static_cast<float*>(scratch);
    else
        return reinterpret_cast<T*>(static_cast<char*>(scratch) +
                                    align256(static_cast<std::size_t>(chunk) * V * 4));
}

}  // namespace

template <typename T>
std::size_t lm_head_scratch_bytes(int chunk, int V) {
    const std::size_t n = static_cast<std::size_t>(chunk) * V;
    if constexpr (std::is_same_v<T, float>)
        return n * sizeof(float);
    else
        return align256(n * sizeof(float)) + n * sizeof(T);
}

template <typename T>
void lm_head_cross_entropy(Blas& blas, float* losses, T* dx, float* dweight, const T* x,
                           const T* weight, const int32_t* targets, int N, int C, int V,
                           float grad_scale, void* scratch, int chunk, float softcap,
                           const float* row_scale) {
    if (N <= 0) return;
    if (chunk <= 0 || V <= 0)
        fail_call("bad chunk or vocabulary size", "lm_head_cross_entropy", __FILE__, __LINE__);
    const bool backward = dx != nullptr || dweight != nullptr;
    float* logits = static_cast<float*>(scratch);
    T* dlogits = chunk_dlogits<T>(scratch, chunk, V);
    for (int start = 0; start < N; start += chunk) {
        const int n = std::min(chunk, N - start);
        const T* xc = x + static_cast<long>(start) * C;
        gemm<T, float>(blas, false, true, n, V, C, 1.0f, xc, C, weight, C, 0.0f, logits, V);
        softmax_xent_kernel<T><<<n, kThreads, 0, blas.stream()>>>(
            dlogits, losses + start, logits, targets + start,
            row_scale ? row_scale + start : nullptr, V, grad_scale, softcap, backward);
        AGPT_CUDA_CHECK_LAUNCH();
        lm_head_chunk_backward<T>(blas, dlogits, V, weight, xc,
                                  dx ? dx + static_cast<long>(start) * C : nullptr, dweight, n, C,
                                  V);
    }
}

template <typename T>
void lm_head_chunk_backward(Blas& blas, const T* dlogits, int ld, const T* weight, const T* x,
                            T* dx, float* dweight, int n, int C, int V) {
    if (dx) gemm<T, T>(blas, false, false, n, C, V, 1.0f, dlogits, ld, weight, C, 1.0f, dx, C);
    if (dweight)
        gemm<T, float>(blas, true, false, V, C, n, 1.0f, dlogits, ld, x, C, 1.0f, dweight, C);
}

template <typename T>
std::size_t vocab_parallel_scratch_bytes(int chunk, int vocab_rows) {
    return align256(lm_head_scratch_bytes<T>(chunk, vocab_rows)) +
           3 * static_cast<std::size_t>(chunk) * sizeof(float);
}

template <typename T>
void vocab_parallel_cross_entropy(Blas& blas, float* losses, T* dx, float* dweight, const T* x,
                                  const T* weight, const int32_t* targets, int N, int C,
                                  int vocab_first, int vocab_rows, float grad_scale, void* scratch,
                                  int chunk, float softcap, const float* row_scale,
                                  const GroupReduce& reduce) {
    if (N <= 0) return;
    const int V = vocab_rows;
    if (chunk <= 0 || V <= 0)
        fail_call("bad chunk or vocabulary size", "vocab_parallel_cross_entropy", __FILE__,
                  __LINE__);
    const bool backward = dx != nullptr || dweight != nullptr;
    float* logits = static_cast<float*>(scratch);
    T* dlogits = chunk_dlogits<T>(scratch, chunk, V);
    float* stats = reinterpret_cast<float*>(static_cast<char*>(scratch) +
                                            align256(lm_head_scratch_bytes<T>(chunk, V)));
    const cudaStream_t s = blas.stream();
    for (int start = 0; start < N; start += chunk) {
        const int n = std::min(chunk, N - start);
        const T* xc = x + static_cast<long>(start) * C;
        const int32_t* tc = targets + start;
        gemm<T, float>(blas, false, true, n, V, C, 1.0f, xc, C, weight, C, 0.0f, logits, V);
        vocab_parallel_max_kernel<<<n, kThreads, 0, s>>>(stats, logits, V, softcap);
        AGPT_CUDA_CHECK_LAUNCH();
        reduce(stats, static_cast<std::size_t>(n), true);
        vocab_parallel_sums_kernel<<<n, kThreads, 0, s>>>(stats, logits, tc, V, vocab_first, chunk,
                                                          n, softcap);
        AGPT_CUDA_CHECK_LAUNCH();
        reduce(stats + chunk, 2 * static_cast<std::size_t>(n), false);
        vocab_parallel_finish_kernel<T><<<n, kThreads, 0, s>>>(
            dlogits, losses + start, logits, stats, tc, row_scale ? row_scale + start : nullptr, V,
            vocab_first, chunk, n, grad_scale, softcap, backward);
        AGPT_CUDA_CHECK_LAUNCH();
        lm_head_chunk_backward<T>(blas, dlogits, V, weight, xc,
                                  dx ? dx + static_cast<long>(start) * C : nullptr, dweight, n, C,
                                  V);
    }
}

double sum_losses(const float* losses, int N, cudaStream_t stream) {
    if (N <= 0) return 0.0;
    StreamScratch out(sizeof(double), stream);
    sum_losses_kernel<<<1, 256, 0, stream>>>(out.as<double>(), losses, N);
    AGPT_CUDA_CHECK_LAUNCH();
    double host = 0.0;
    AGPT_CUDA_CHECK(
        cudaMemcpyAsync(&host, out.data(), sizeof host, cudaMemcpyDeviceToHost, stream));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(stream));
    return host;
}

template void lm_head_cross_entropy<float>(Blas&, float*, float*, float*, const float*,
                                           const float*, const int32_t*, int, int, int, float,
                                           void*, int, float, const float*);
template void lm_head_cross_entropy<bf16>(Blas&, float*, bf16*, float*, const bf16*, const bf16*,
                                          const int32_t*, int, int, int, float, void*, int, float,
                                          const float*);
template void lm_head_chunk_backward<float>(Blas&, const float*, int, const float*, const float*,
                                            float*, float*, int, int, int);
template void lm_head_chunk_backward<bf16>(Blas&, const bf16*, int, const bf16*, const bf16*, bf16*,
                                           float*, int, int, int);
template void vocab_parallel_cross_entropy<float>(Blas&, float*, float*, float*, const float*,
                                                  const float*, const int32_t*, int, int, int, int,
                                                  float, void*, int, float, const float*,
                                                  const GroupReduce&);
template void vocab_parallel_cross_entropy<bf16>(Blas&, float*, bf16*, float*, const bf16*,
                                                 const bf16*, const int32_t*, int, int, int, int,
                                                 float, void*, int, float, const float*,
                                                 const GroupReduce&);
template std::size_t vocab_parallel_scratch_bytes<float>(int, int);
template std::size_t vocab_parallel_scratch_bytes<bf16>(int, int);
template std::size_t lm_head_scratch_bytes<float>(int, int);
template std::size_t lm_head_scratch_bytes<bf16>(int, int);

}  // namespace agpt::cuda
