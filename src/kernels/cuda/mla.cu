#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mla.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kThreads = 256;

// One thread per element of the packed row.
template <typename T>
__global__ void pack_qkv_kernel(T* qkv, const T* q, const T* kv, const T* k_pe, MlaHeads m,
                                float q_scale, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int H = m.n_heads, HP = m.padded, P = m.nope + m.rope, W = m.nope + m.v;
    const long row = idx / (3L * H * HP);
    const int c = static_cast<int>(idx % (3L * H * HP));
    const int part = c / (H * HP), h = (c % (H * HP)) / HP, i = c % HP;
    float val = 0.0f;
    if (part == 0) {
        if (i < P) val = q_scale * to_float(q[row * H * P + h * P + i]);
    } else if (part == 1) {
        if (i < m.nope)
            val = to_float(kv[row * H * W + h * W + i]);
        else if (i < P)
            val = to_float(k_pe[row * m.rope + i - m.nope]);
    } else if (i < m.v) {
        val = to_float(kv[row * H * W + h * W + m.nope + i]);
    }
    qkv[idx] = from_float<T>(val);
}

// One thread per element of dq | dkv | dk_pe of a row.
template <typename T>
__global__ void unpack_qkv_kernel(T* dq, T* dkv, T* dk_pe, const T* dqkv, MlaHeads m, float q_scale,
                                  long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int H = m.n_heads, HP = m.padded, P = m.nope + m.rope, W = m.nope + m.v;
    const int cols = H * P + H * W + m.rope;
    const long row = idx / cols;
    const int j = static_cast<int>(idx % cols);
    const T* d = dqkv + row * 3 * H * HP;
    if (j < H * P) {
        const int h = j / P, i = j % P;
        dq[row * H * P + j] = from_float<T>(q_scale * to_float(d[h * HP + i]));
    } else if (j < H * P + H * W) {
        const int jj = j - H * P, h = jj / W, i = jj % W;
        const float v =
            i < m.nope ? to_float(d[(H + h) * HP + i]) : to_float(d[(2 * H + h) * HP + i - m.nope]);
        dkv[row * H * W + jj] = from_float<T>(v);
    } else {
        const int i = j - H * P - H * W;
        float acc = 0.0f;  // k_pe is shared by the heads
        for (int h = 0; h < H; h++) acc += to_float(d[(H + h) * HP + m.nope + i]);
        dk_pe[row * m.rope + i] = from_float<T>(acc);
    }
}

template <typename T>
__global__ void unpad_heads_kernel(T* o, const T* att, int HP, int V, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long head = idx / V;  // (row, h) flattened
    o[idx] = att[head * HP + idx % V];
}

template <typename T>
__global__ void pad_heads_kernel(T* datt, const T* d_o, int HP, int V, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long head = idx / HP;
    const int i = static_cast<int>(idx % HP);
    datt[idx] = i < V ? d_o[head * V + i] : from_float<T>(0.0f);
}

}  // namespace

template <typename T>
void mla_pack_qkv(T* qkv, const T* q, const T* kv, const T* k_pe, const MlaHeads& m, int N,
                  float q_scale, cudaStream_t stream) {
    const long n = static_cast<long>(N) * 3 * m.n_heads * m.padded;
    if (n <= 0) return;
    pack_qkv_kernel<T>
        <<<ceil_div(n, kThreads), kThreads, 0, stream>>>(qkv, q, kv, k_pe, m, q_scale, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void mla_unpack_qkv(T* dq, T* dkv, T* dk_pe, const T* dqkv, const MlaHeads& m, int N, float q_scale,
                    cudaStream_t stream) {
    const long cols = static_cast<long>(m.n_heads) * (2 * m.nope + m.rope + m.v) + m.rope;
    const long n = static_cast<long>(N) * cols;
    if (n <= 0) return;
    unpack_qkv_kernel<T>
        <<<ceil_div(n, kThreads), kThreads, 0, stream>>>(dq, dkv, dk_pe, dqkv, m, q_scale, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void mla_unpad_heads(T* o, const T* att, const MlaHeads& m, int N, cudaStream_t stream) {
    const long n = static_cast<long>(N) * m.n_heads * m.v;
    if (n <= 0) return;
    unpad_heads_kernel<T><<<ceil_div(n, kThreads), kThreads, 0, stream>>>(o, att, m.padded, m.v, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void mla_pad_heads(T* datt, const T* d_o, const MlaHeads& m, int N, cudaStream_t stream) {
    const long n = static_cast<long>(N) * m.n_heads * m.padded;
    if (n <= 0) return;
    pad_heads_kernel<T>
        <<<ceil_div(n, kThreads), kThreads, 0, stream>>>(datt, d_o, m.padded, m.v, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

#define AGPT_MLA(T)                                                                              \
    template void mla_pack_qkv<T>(T*, const T*, const T*, const T*, const MlaHeads&, int, float, \
                                  cudaStream_t);                                                 \
    template void mla_unpack_qkv<T>(T*, T*, T*, const T*, const MlaHeads&, int, float,           \
                                    cudaStream_t);                                               \
    template void mla_unpad_heads<T>(T*, const T*, const MlaHeads&, int, cudaStream_t);          \
    template void mla_pad_heads<T>(T*, const T*, const MlaHeads&, int, cudaStream_t);
AGPT_MLA(float)
AGPT_MLA(bf16)
#undef AGPT_MLA

}  // namespace agpt::cuda
