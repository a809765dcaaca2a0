#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.h"

namespace agpt::cuda {

namespace {

using namespace detail;

// One thread per rotated pair; sign = -1 applies the inverse rotation.
template <typename T>
__global__ void rope_kernel(T* x, const float* cos_table, const float* sin_table, int T_len,
                            int n_heads, int hd, int row_stride, long pairs, float sign) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= pairs) return;
    const int half = hd / 2;
    const int i = static_cast<int>(idx % half);
    const long rest = idx / half;
    const int h = static_cast<int>(rest % n_heads);
    const long r = rest / n_heads;
    const long t = r % T_len;
    T* a = x + r * row_stride + static_cast<long>(h) * hd;
    const float c = cos_table[t * half + i];
    const float s = sign * sin_table[t * half + i];
    const float a0 = to_float(a[i]), b0 = to_float(a[i + half]);
    a[i] = from_float<T>(a0 * c - b0 * s);
    a[i + half] = from_float<T>(b0 * c + a0 * s);
}

template <typename T>
void rotate(T* x, const float* cos_table, const float* sin_table, int B, int T_len, int n_heads,
            int hd, int row_stride, float sign, cudaStream_t stream) {
    const long pairs = static_cast<long>(B) * T_len * n_heads * (hd / 2);
    if (pairs <= 0) return;
    rope_kernel<T><<<ceil_div(pairs, 256), 256, 0, stream>>>(x, cos_table, sin_table, T_len,
                                                             n_heads, hd, row_stride, pairs, sign);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <typename T>
void rope_forward(T* x, const float* cos_table, const float* sin_table, int B, int T_len,
                  int n_heads, int hd, int row_stride, cudaStream_t stream) {
    rotate(x, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, 1.0f, stream);
}

template <typename T>
void rope_backward(T* dx, const float* cos_table, const float* sin_table, int B, int T_len,
                   int n_heads, int hd, int row_stride, cudaStream_t stream) {
    rotate(dx, cos_table, sin_table, B, T_len, n_heads, hd, row_stride, -1.0f, stream);
}

template void rope_forward<float>(float*, const float*, const float*, int, int, int, int, int,
                                  cudaStream_t);
template void rope_forward<bf16>(bf16*, const float*, const float*, int, int, int, int, int,
                                 cudaStream_t);
template void rope_backward<float>(float*, const float*, const float*, int, int, int, int, int,
                                   cudaStream_t);
template void rope_backward<bf16>(bf16*, const float*, const float*, int, int, int, int, int,
                                  cudaStream_t);

}  // namespace agpt::cuda
