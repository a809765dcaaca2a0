#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/model_ops.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/swiglu.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kCastThreads = 256;
constexpr int kSumThreads = 256;
constexpr int kNormThreads = 256;
constexpr int kFinalThreads = 1024;
static_assert(kGpuGradNormBlock % kNormThreads == 0);

__global__ void cast_bf16_kernel(bf16* out, const float* in, std::size_t n) {
    const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
    for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride)
        out[i] = __float2bfloat16(in[i]);
}

__global__ void cast_float_kernel(float* out, const bf16* in, std::size_t n) {
    const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
    for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride)
        out[i] = __bfloat162float(in[i]);
}

// In-place tree over s[0..threads): s[0] ends with the sum, always in the same order.
__device__ void tree_sum(double* s, int threads) {
    for (int w = threads / 2; w > 0; w >>= 1) {
        if (static_cast<int>(threadIdx.x) < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
}

__global__ void accumulate_sum_kernel(double* acc, const float* x, int n) {
    __shared__ double s[kSumThreads];
    double a = 0.0;
    for (int i = threadIdx.x; i < n; i += kSumThreads) a += x[i];
    s[threadIdx.x] = a;
    __syncthreads();
    tree_sum(s, kSumThreads);
    if (threadIdx.x == 0) *acc += s[0];
}

// One block per kGpuGradNormBlock elements: partial[b] = Σ g² over the block.
__global__ void sum_squares_kernel(double* partial, const float* g, std::size_t n) {
    __shared__ double s[kNormThreads];
    const std::size_t begin = static_cast<std::size_t>(blockIdx.x) * kGpuGradNormBlock;
    const std::size_t end = begin + kGpuGradNormBlock < n ? begin + kGpuGradNormBlock : n;
    double a = 0.0;
    for (std::size_t i = begin + threadIdx.x; i < end; i += kNormThreads) {
        const double x = g[i];
        a += x * x;
    }
    s[threadIdx.x] = a;
    __syncthreads();
    tree_sum(s, kNormThreads);
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

__global__ void norm_final_kernel(double* norm_out, const double* partial, long n_blocks) {
    __shared__ double s[kFinalThreads];
    double a = 0.0;
    for (long i = threadIdx.x; i < n_blocks; i += kFinalThreads) a += partial[i];
    s[threadIdx.x] = a;
    __syncthreads();
    tree_sum(s, kFinalThreads);
    if (threadIdx.x == 0) *norm_out = sqrt(s[0]);
}

__global__ void clip_kernel(float* g, std::size_t n, const double* norm, double max_norm) {
    const double coef = max_norm / (*norm + 1e-6);
    // As optim/grad_clip.cpp (and torch): a coefficient >= 1 leaves g alone; below 1 or NaN
    // multiplies by the float32 coefficient.
    if (coef >= 1.0) return;
    const float c = static_cast<float>(coef);
    const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
    for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride)
        g[i] *= c;
}

constexpr int kSwigluThreads = 128;

// Thread: VEC consecutive columns of rows blockIdx.y, blockIdx.y + gridDim.y, ... The
// arithmetic is swiglu.cu's.
template <typename T>
__global__ void swiglu_forward_vec_kernel(T* out, const T* h13, int N, int F) {
    constexpr int V = kVec<T>;
    using P = Pack<T, V>;
    const int j = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (j >= F) return;
    for (long i = blockIdx.y; i < N; i += gridDim.y) {
        const P a = *vec_ptr<P>(h13 + i * 2 * F + j);
        const P b = *vec_ptr<P>(h13 + i * 2 * F + F + j);
        P o;
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float x = to_float(a.v[k]);
            o.v[k] = from_float<T>(x / (1.0f + expf(-x)) * to_float(b.v[k]));
        }
        *vec_ptr<P>(out + i * F + j) = o;
    }
}

template <typename T>
__global__ void swiglu_backward_overwrite_kernel(T* dh13, const T* dout, const T* h13, int N,
                                                 int F) {
    constexpr int V = kVec<T>;
    using P = Pack<T, V>;
    const int j = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (j >= F) return;
    for (long i = blockIdx.y; i < N; i += gridDim.y) {
        const long ia = i * 2 * F + j, ib = ia + F;
        const P a = *vec_ptr<P>(h13 + ia);
        const P b = *vec_ptr<P>(h13 + ib);
        const P g = *vec_ptr<P>(dout + i * F + j);
        P da, db;
#pragma unroll
        for (int k = 0; k < V; k++) {
            const float x = to_float(a.v[k]), y = to_float(b.v[k]), d = to_float(g.v[k]);
            const float sig = 1.0f / (1.0f + expf(-x));
            const float silu = x * sig;
            da.v[k] = from_float<T>(d * y * sig * (1.0f + x * (1.0f - sig)));
            db.v[k] = from_float<T>(d * silu);
        }
        *vec_ptr<P>(dh13 + ia) = da;
        *vec_ptr<P>(dh13 + ib) = db;
    }
}

// Thread: VEC consecutive pairs (i .. i+VEC-1 with i + hd/2 ..) of one head of one row.
template <typename T>
__global__ void rope_vec_kernel(T* x, const float* cos_table, const float* sin_table, int T_len,
                                int n_heads, int hd, int row_stride, long rows, float sign) {
    constexpr int V = kVec<T>;
    using P = Pack<T, V>;
    using F = Pack<float, V>;
    const int half = hd / 2, per_head = half / V, per_row = n_heads * per_head;
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const long r = idx / per_row;
    if (r >= rows) return;
    const int rem = static_cast<int>(idx - r * per_row);
    const int h = rem / per_head, i = (rem - h * per_head) * V;
    const long t = r % T_len;
    T* a = x + r * row_stride + static_cast<long>(h) * hd + i;
    const F c = *vec_ptr<F>(cos_table + t * half + i);
    const F sn = *vec_ptr<F>(sin_table + t * half + i);
    const P lo = *vec_ptr<P>(a);
    const P hi = *vec_ptr<P>(a + half);
    P olo, ohi;
#pragma unroll
    for (int k = 0; k < V; k++) {
        const float s = sign * sn.v[k];
        const float a0 = to_float(lo.v[k]), b0 = to_float(hi.v[k]);
        olo.v[k] = from_float<T>(a0 * c.v[k] - b0 * s);
        ohi.v[k] = from_float<T>(b0 * c.v[k] + a0 * s);
    }
    *vec_ptr<P>(a) = olo;
    *vec_ptr<P>(a + half) = ohi;
}

constexpr int kXentThreads = 512;

// One block per row of bf16 logits z (V): loss = log Σexp(y) − y[target] with y = z, or
// y = cap·tanh(z/cap) when CAP; with backward, z is overwritten by
// grad_scale·(softmax(y) − onehot)·dy/dz (zeros for an ignored row). vec: V is a multiple of 8
// and the rows 16-byte aligned.
template <bool CAP>
__global__ void __launch_bounds__(kXentThreads)
    xent_bf16_kernel(bf16* logits, int ld, float* losses, const int32_t* targets,
                     const float* row_scale, int V, float grad_scale, float cap, bool backward,
                     bool vec) {
    __shared__ float red[32];
    using P = Pack<bf16, 8>;
    bf16* z = logits + static_cast<long>(blockIdx.x) * ld;
    // vec: the first V8 columns in 16-byte packs, the rest one by one.
    const int V8 = vec ? V & ~7 : 0;
    const int32_t target = targets[blockIdx.x];
    if (row_scale) grad_scale *= row_scale[blockIdx.x];
    auto capped = [&](float x) {
        if constexpr (CAP) x = cap * tanhf(x / cap);
        return x;
    };
    auto cap_grad = [&](float y) {  // dy/dz from y: 1 − (y/cap)²
        float d = 1.0f;
        if constexpr (CAP) d -= (y / cap) * (y / cap);
        return d;
    };
    float m = -INFINITY, s = 0.0f;
    auto add = [&](float y) {
        if (y > m) {
            s = s * expf(m - y) + 1.0f;
            m = y;
        } else {
            s += expf(y - m);
        }
    };
    for (int v = threadIdx.x * 8; v < V8; v += kXentThreads * 8) {
        const P p = *vec_ptr<P>(z + v);
#pragma unroll
        for (int k = 0; k < 8; k++) add(capped(to_float(p.v[k])));
    }
    for (int v = V8 + threadIdx.x; v < V; v += kXentThreads) add(capped(to_float(z[v])));
    const float mx = block_max(m, red);
    const float sum = block_sum(m == -INFINITY ? 0.0f : s * expf(m - mx), red);
    const float target_logit = target >= 0 ? capped(to_float(z[target])) : 0.0f;
    if (threadIdx.x == 0) losses[blockIdx.x] = target >= 0 ? logf(sum) + mx - target_logit : 0.0f;
    if (!backward) return;
    __syncthreads();  // every thread has read z[target] before it is overwritten
    const float scale = target >= 0 ? grad_scale / sum : 0.0f;
    const float tg = target >= 0 ? grad_scale * cap_grad(target_logit) : 0.0f;
    auto grad = [&](float zv, int v) {
        const float y = capped(zv);
        float g = expf(y - mx) * scale * cap_grad(y);
        if (v == target) g -= tg;
        return from_float<bf16>(g);
    };
    for (int v = threadIdx.x * 8; v < V8; v += kXentThreads * 8) {
        P p = *vec_ptr<P>(z + v);
#pragma unroll
        for (int k = 0; k < 8; k++) p.v[k] = grad(to_float(p.v[k]), v + k);
        *vec_ptr<P>(z + v) = p;
    }
    for (int v = V8 + threadIdx.x; v < V; v += kXentThreads) z[v] = grad(to_float(z[v]), v);
}

dim3 swiglu_grid(int N, int F, int vec) {
    const long threads = F / vec;
    return dim3(static_cast<unsigned>(ceil_div(threads, kSwigluThreads)),
                static_cast<unsigned>(N < 65535 ? N : 65535));
}

long grid_for(std::size_t n, int threads) {
    const long blocks = ceil_div(static_cast<long>(n), threads);
    return blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096;
}

}  // namespace

void cast_to_bf16(bf16* out, const float* in, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    cast_bf16_kernel<<<grid_for(n, kCastThreads), kCastThreads, 0, stream>>>(out, in, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

void cast_to_float(float* out, const bf16* in, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    cast_float_kernel<<<grid_for(n, kCastThreads), kCastThreads, 0, stream>>>(out, in, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

void accumulate_sum(double* acc, const float* x, int n, cudaStream_t stream) {
    if (n <= 0) return;
    accumulate_sum_kernel<<<1, kSumThreads, 0, stream>>>(acc, x, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

std::size_t grad_norm_scratch_bytes(std::size_t n) {
    const std::size_t blocks = (n + kGpuGradNormBlock - 1) / kGpuGradNormBlock;
    return (blocks > 0 ? blocks : 1) * sizeof(double);
}

void grad_norm_clip(float* g, std::size_t n, double max_norm, double* norm_out, void* scratch,
                    cudaStream_t stream) {
    const long n_blocks = ceil_div(static_cast<long>(n), static_cast<long>(kGpuGradNormBlock));
    double* partial = static_cast<double*>(scratch);
    if (n_blocks > 0) {
        sum_squares_kernel<<<n_blocks, kNormThreads, 0, stream>>>(partial, g, n);
        AGPT_CUDA_CHECK_LAUNCH();
    }
    norm_final_kernel<<<1, kFinalThreads, 0, stream>>>(norm_out, partial, n_blocks);
    AGPT_CUDA_CHECK_LAUNCH();
    clip_to_norm(g, n, norm_out, max_norm, stream);
}

void clip_to_norm(float* g, std::size_t n, const double* norm, double max_norm,
                  cudaStream_t stream) {
    if (!(max_norm > 0.0) || n == 0) return;
    clip_kernel<<<grid_for(n, 256), 256, 0, stream>>>(g, n, norm, max_norm);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void swiglu_forward_vec(T* out, const T* h13, int N, int F, cudaStream_t stream) {
    if (N <= 0 || F <= 0) return;
    if (F % kVec<T> != 0 || !aligned16(out) || !aligned16(h13)) {
        swiglu_forward<T>(out, h13, N, F, stream);
        return;
    }
    swiglu_forward_vec_kernel<T>
        <<<swiglu_grid(N, F, kVec<T>), kSwigluThreads, 0, stream>>>(out, h13, N, F);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void swiglu_backward_overwrite(T* dh13, const T* dout, const T* h13, int N, int F,
                               cudaStream_t stream) {
    if (N <= 0 || F <= 0) return;
    if (F % kVec<T> != 0 || !aligned16(dh13) || !aligned16(dout) || !aligned16(h13)) {
        AGPT_CUDA_CHECK(
            cudaMemsetAsync(dh13, 0, sizeof(T) * static_cast<std::size_t>(N) * 2 * F, stream));
        swiglu_backward<T>(dh13, dout, h13, N, F, stream);
        return;
    }
    swiglu_backward_overwrite_kernel<T>
        <<<swiglu_grid(N, F, kVec<T>), kSwigluThreads, 0, stream>>>(dh13, dout, h13, N, F);
    AGPT_CUDA_CHECK_LAUNCH();
}

int lm_head_logits_ld(int V) {
    return (V + 63) / 64 * 64;
}

std::size_t lm_head_bf16_logits_scratch_bytes(int chunk, int V) {
    return static_cast<std::size_t>(chunk) * lm_head_logits_ld(V) * sizeof(bf16);
}

void lm_head_cross_entropy_bf16_logits(Blas& blas, float* losses, bf16* dx, float* dweight,
                                       const bf16* x, const bf16* weight, const int32_t* targets,
                                       int N, int C, int V, float grad_scale, void* scratch,
                                       int chunk, float softcap, const float* row_scale) {
    if (N <= 0) return;
    if (chunk <= 0 || V <= 0)
        fail_call("bad chunk or vocabulary size", "lm_head_cross_entropy_bf16_logits", __FILE__,
                  __LINE__);
    const bool backward = dx != nullptr || dweight != nullptr;
    bf16* logits = static_cast<bf16*>(scratch);
    const int ld = lm_head_logits_ld(V);
    const bool vec = aligned16(logits);
    for (int start = 0; start < N; start += chunk) {
        const int n = N - start < chunk ? N - start : chunk;
        const bf16* xc = x + static_cast<long>(start) * C;
        gemm<bf16, bf16>(blas, false, true, n, V, C, 1.0f, xc, C, weight, C, 0.0f, logits, ld);
        const float* rs = row_scale ? row_scale + start : nullptr;
        if (softcap > 0.0f)
            xent_bf16_kernel<true>
                <<<n, kXentThreads, 0, blas.stream()>>>(logits, ld, losses + start, targets + start,
                                                        rs, V, grad_scale, softcap, backward, vec);
        else
            xent_bf16_kernel<false>
                <<<n, kXentThreads, 0, blas.stream()>>>(logits, ld, losses + start, targets + start,
                                                        rs, V, grad_scale, softcap, backward, vec);
        AGPT_CUDA_CHECK_LAUNCH();
        lm_head_chunk_backward<bf16>(blas, logits, ld, weight, xc,
                                     dx ? dx + static_cast<long>(start) * C : nullptr, dweight, n,
                                     C, V);
    }
}

template <typename T>
bool rope_vec(T* x, const float* cos_table, const float* sin_table, int B, int T_len, int n_heads,
              int hd, int row_stride, float sign, cudaStream_t stream) {
    const int half = hd / 2;
    constexpr std::uintptr_t table_align = alignof(Pack<float, kVec<T>>);
    if (half % kVec<T> != 0 || row_stride % kVec<T> != 0 || !aligned16(x) ||
        reinterpret_cast<std::uintptr_t>(cos_table) % table_align != 0 ||
        reinterpret_cast<std::uintptr_t>(sin_table) % table_align != 0)
        return false;
    const long rows = static_cast<long>(B) * T_len;
    const long threads = rows * n_heads * (half / kVec<T>);
    if (threads > 0) {
        rope_vec_kernel<T><<<ceil_div(threads, 256), 256, 0, stream>>>(
            x, cos_table, sin_table, T_len, n_heads, hd, row_stride, rows, sign);
        AGPT_CUDA_CHECK_LAUNCH();
    }
    return true;
}

template <typename T>
void rope_forward_vec(T* x, const float* cos_table, const float* sin_table, int B, int T_len,
                      int n_heads, int hd, int row_stride, cudaStream_t stream) {
    if (!rope_vec(x, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, 1.0f, stream))
        rope_forward<T>(x, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, stream);
}

template <typename T>
void rope_backward_vec(T* dx, const float* cos_table, const float* sin_table, int B, int T_len,
                       int n_heads, int hd, int row_stride, cudaStream_t stream) {
    if (!rope_vec(dx, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, -1.0f, stream))
        rope_backward<T>(dx, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, stream);
}

template void rope_forward_vec<float>(float*, const float*, const float*, int, int, int, int, int,
                                      cudaStream_t);
template void rope_forward_vec<bf16>(bf16*, const float*, const float*, int, int, int, int, int,
                                     cudaStream_t);
template void rope_backward_vec<float>(float*, const float*, const float*, int, int, int, int, int,
                                       cudaStream_t);
template void rope_backward_vec<bf16>(bf16*, const float*, const float*, int, int, int, int, int,
                                      cudaStream_t);

template void swiglu_forward_vec<float>(float*, const float*, int, int, cudaStream_t);
template void swiglu_forward_vec<bf16>(bf16*, const bf16*, int, int, cudaStream_t);
template void swiglu_backward_overwrite<float>(float*, const float*, const float*, int, int,
                                               cudaStream_t);
template void swiglu_backward_overwrite<bf16>(bf16*, const bf16*, const bf16*, int, int,
                                              cudaStream_t);

}  // namespace agpt::cuda
