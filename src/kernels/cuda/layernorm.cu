#include "kernels/cuda/common.cuh"
#include "kernels/cuda/layernorm.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Rows per block of the backward: its dweight/dbias partials sum these rows, in order.
constexpr int kRowBlock = 32;
// Rows whose loads one thread issues together in the backward's column walk.
constexpr int kRowBatch = 4;

// Rows are read as packs of VEC elements: kVec<T> (16-byte accesses) when C and the pointers
// allow it, else 1.

// One warp per row; two passes over the row (it stays in L1): Σ(x − m)² does not cancel the
// way Σx² − C·m² does, and the CPU twin computes it so.
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                             const T* bias, int N, int C, float eps) {
    using P = Pack<T, VEC>;
    const int row = blockIdx.x * kWarps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= N) return;
    const int CP = C / VEC;
    const P* x = vec_ptr<P>(inp + static_cast<long>(row) * C);
    const P* w = vec_ptr<P>(weight);
    const P* b = vec_ptr<P>(bias);
    P* o = vec_ptr<P>(out + static_cast<long>(row) * C);
    float sum = 0.0f;
    for (int j = lane; j < CP; j += 32) {
        const P v = x[j];
#pragma unroll
        for (int k = 0; k < VEC; k++) sum += to_float(v.v[k]);
    }
    const float m = warp_sum(sum) / static_cast<float>(C);
    float ss = 0.0f;
    for (int j = lane; j < CP; j += 32) {
        const P v = x[j];
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            const float d = to_float(v.v[k]) - m;
            ss += d * d;
        }
    }
    const float r = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(C) + eps);
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
    for (int j = lane; j < CP; j += 32) {
        const P v = x[j], wv = w[j], bv = b[j];
        P y;
#pragma unroll
        for (int k = 0; k < VEC; k++)
            y.v[k] =
                from_float<T>((to_float(v.v[k]) - m) * r * to_float(wv.v[k]) + to_float(bv.v[k]));
        o[j] = y;
    }
}

// Block b owns rows [b·kRowBlock, (b+1)·kRowBlock). With x̂ = (x − m)·r and g = dout·weight:
// first each warp forms mean(g) and mean(g ⊙ x̂) of its rows, then each thread walks its
// columns down the rows, adding dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂)) into dinp and summing its
// dweight (dout ⊙ x̂) and dbias (dout) partials, written to partial[b·2C + c] and
// partial[b·2C + C + c].
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads)
    layernorm_backward_kernel(T* dinp, float* partial, const T* dout, const T* inp, const T* weight,
                              const float* mean, const float* rstd, int N, int C, int parts) {
    using P = Pack<T, VEC>;
    __shared__ float g_mean[kRowBlock], gx_mean[kRowBlock], ms[kRowBlock], rs[kRowBlock];
    const int row0 = blockIdx.x * kRowBlock;
    const int rows = min(kRowBlock, N - row0);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int CP = C / VEC;
    const P* w = vec_ptr<P>(weight);
    for (int i = warp; i < rows; i += kWarps) {
        const long off = static_cast<long>(row0 + i) * C;
        const P* d = vec_ptr<P>(dout + off);
        const P* x = vec_ptr<P>(inp + off);
        const float m = mean[row0 + i], r = rstd[row0 + i];
        float g_sum = 0.0f, gx_sum = 0.0f;
        for (int j = lane; j < CP; j += 32) {
            const P dv = d[j], xv = x[j], wv = w[j];
#pragma unroll
            for (int k = 0; k < VEC; k++) {
                const float g = to_float(dv.v[k]) * to_float(wv.v[k]);
                g_sum += g;
                gx_sum += g * (to_float(xv.v[k]) - m) * r;
            }
        }
        g_sum = warp_sum(g_sum);
        gx_sum = warp_sum(gx_sum);
        if (lane == 0) {
            g_mean[i] = g_sum / static_cast<float>(C);
            gx_mean[i] = gx_sum / static_cast<float>(C);
            ms[i] = m;
            rs[i] = r;
        }
    }
    __syncthreads();
    for (int j = threadIdx.x; j < CP; j += kThreads) {
        const P wv = w[j];
        float dw[VEC], db[VEC], ds[VEC];
#pragma unroll
        for (int k = 0; k < VEC; k++) dw[k] = db[k] = ds[k] = 0.0f;
        // kRowBatch rows' loads before any of their stores (as rmsnorm_backward_kernel):
        // several memory latencies in flight per thread instead of one.
        for (int i0 = 0; i0 < rows; i0 += kRowBatch) {
            P dv[kRowBatch], xv[kRowBatch], dx[kRowBatch];
#pragma unroll
            for (int u = 0; u < kRowBatch; u++)
                if (i0 + u < rows) {
                    const long idx =
                        static_cast<long>(row0 + i0 + u) * C + static_cast<long>(j) * VEC;
                    dv[u] = *vec_ptr<P>(dout + idx);
                    xv[u] = *vec_ptr<P>(inp + idx);
                    dx[u] = *vec_ptr<P>(dinp + idx);
                }
#pragma unroll
            for (int u = 0; u < kRowBatch; u++) {
                const int i = i0 + u;
                if (i >= rows) break;
#pragma unroll
                for (int k = 0; k < VEC; k++) {
                    const float d = to_float(dv[u].v[k]);
                    const float xhat = (to_float(xv[u].v[k]) - ms[i]) * rs[i];
                    dx[u].v[k] = from_float<T>(
                        to_float(dx[u].v[k]) +
                        rs[i] * (d * to_float(wv.v[k]) - g_mean[i] - xhat * gx_mean[i]));
                    dw[k] += d * xhat;
                    db[k] += d;
                    ds[k] += to_float(dx[u].v[k]);  // the stored value, as bias_backward sums
                }
                *vec_ptr<P>(dinp + static_cast<long>(row0 + i) * C + static_cast<long>(j) * VEC) =
                    dx[u];
            }
        }
        float* pw =
            partial + static_cast<long>(blockIdx.x) * parts * C + static_cast<long>(j) * VEC;
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            pw[k] = dw[k];
            pw[C + k] = db[k];
            if (parts == 3) pw[2 * C + k] = ds[k];
        }
    }
}

// out[p][c] += Σ_b partial[b·parts·C + p·C + c] for p < parts (dweight, dbias, then dinp's column
// sums when asked for), blocks in order.
__global__ void sum_partials_kernel(float* dweight, float* dbias, float* dsum, const float* partial,
                                    int blocks, int C, int parts) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= parts * C) return;
    float s = 0.0f;
    for (int b = 0; b < blocks; ++b) s += partial[static_cast<long>(b) * parts * C + c];
    float* out = c < C ? dweight : c < 2 * C ? dbias : dsum;
    out[c % C] += s;
}

// 16-byte packs when C is a multiple of the pack and every pointer is 16-byte aligned (rows
// then are too).
template <typename T>
bool packs_fit(int C, const void* a, const void* b, const void* c, const void* d) {
    return C % kVec<T> == 0 && aligned16(a) && aligned16(b) && aligned16(c) && aligned16(d);
}

}  // namespace

template <typename T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* weight,
                       const T* bias, int N, int C, float eps, cudaStream_t stream) {
    if (N <= 0) return;
    const long blocks = ceil_div(N, kWarps);
    if (packs_fit<T>(C, out, inp, weight, bias))
        layernorm_forward_kernel<T, kVec<T>>
            <<<blocks, kThreads, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C, eps);
    else
        layernorm_forward_kernel<T, 1>
            <<<blocks, kThreads, 0, stream>>>(out, mean, rstd, inp, weight, bias, N, C, eps);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void layernorm_backward(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                        const T* weight, const float* mean, const float* rstd, int N, int C,
                        cudaStream_t stream, float* dinp_column_sums) {
    if (N <= 0 || C <= 0) return;
    const int blocks = static_cast<int>(ceil_div(N, kRowBlock));
    const int parts = dinp_column_sums ? 3 : 2;
    StreamScratch partial(sizeof(float) * blocks * parts * static_cast<std::size_t>(C), stream);
    if (packs_fit<T>(C, dinp, dout, inp, weight))
        layernorm_backward_kernel<T, kVec<T>><<<blocks, kThreads, 0, stream>>>(
            dinp, partial.as<float>(), dout, inp, weight, mean, rstd, N, C, parts);
    else
        layernorm_backward_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(
            dinp, partial.as<float>(), dout, inp, weight, mean, rstd, N, C, parts);
    AGPT_CUDA_CHECK_LAUNCH();
    sum_partials_kernel<<<ceil_div(parts * C, 256), 256, 0, stream>>>(
        dweight, dbias, dinp_column_sums, partial.as<float>(), blocks, C, parts);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*,
                                       const float*, int, int, float, cudaStream_t);
template void layernorm_forward<bf16>(bf16*, float*, float*, const bf16*, const bf16*, const bf16*,
                                      int, int, float, cudaStream_t);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int, int,
                                        cudaStream_t, float*);
template void layernorm_backward<bf16>(bf16*, float*, float*, const bf16*, const bf16*, const bf16*,
                                       const float*, const float*, int, int, cudaStream_t, float*);

}  // namespace agpt::cuda
