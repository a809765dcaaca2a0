#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe_dispatch.h"

namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kPlanThreads = 256;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// One block per expert e; thread t scans a contiguous segment of the N·k assignments. Expert e's
// block starts after every assignment to a lower expert, and its rows follow assignment order
// (an exclusive scan of the segments' counts), so the result is cpu::moe_plan's counting sort,
// without atomics.
__global__ void moe_plan_kernel(int* offsets, int* row_token, int* slot_row, double* load,
                                const int* experts, int M, int k, int E) {
    __shared__ int own_scan[kPlanThreads];
    __shared__ int lower_sum[kPlanThreads];
    const int e = blockIdx.x, t = threadIdx.x;
    const long len = (static_cast<long>(M) + kPlanThreads - 1) / kPlanThreads;
    const long begin = min(static_cast<long>(t) * len, static_cast<long>(M));
    const long end = min(begin + len, static_cast<long>(M));
    int own = 0, lower = 0;
    for (long i = begin; i < end; i++) {
        const int x = experts[i];
        own += x == e ? 1 : 0;
        lower += x < e ? 1 : 0;
    }
    own_scan[t] = own;
    lower_sum[t] = lower;
    __syncthreads();
    for (int o = 1; o < kPlanThreads; o <<= 1) {  // inclusive scan (Hillis-Steele)
        const int v = t >= o ? own_scan[t - o] : 0;
        __syncthreads();
        own_scan[t] += v;
        __syncthreads();
    }
    for (int w = kPlanThreads / 2; w > 0; w >>= 1) {
        if (t < w) lower_sum[t] += lower_sum[t + w];
        __syncthreads();
    }
    const int offset = lower_sum[0], count = own_scan[kPlanThreads - 1];
    int r = offset + own_scan[t] - own;
    for (long i = begin; i < end; i++)
        if (experts[i] == e) {
            row_token[r] = static_cast<int>(i / k);
            slot_row[i] = r;
            r++;
        }
    if (t == 0) {
        offsets[e] = offset;
        if (e == E - 1) offsets[E] = offset + count;
        if (load) load[e] += count;
    }
}

template <typename T>
__global__ void gather_kernel(T* xs, const T* x, const int* row_token, int D, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long r = idx / D, c = idx % D;
    xs[idx] = x[static_cast<long>(row_token[r]) * D + c];
}

// One thread per (token, column): the token's k rows in slot order.
template <typename T>
__global__ void gather_backward_kernel(T* dx, const T* dxs, const int* slot_row, int k, int D,
                                       long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long tok = idx / D, c = idx % D;
    float acc = to_float(dx[idx]);
    for (int j = 0; j < k; j++)
        acc += to_float(dxs[static_cast<long>(slot_row[tok * k + j]) * D + c]);
    dx[idx] = from_float<T>(acc);
}

template <typename T>
__global__ void combine_kernel(T* out, const T* ys, const float* gates, const int* slot_row, int k,
                               int D, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long tok = idx / D, c = idx % D;
    float acc = to_float(out[idx]);
    for (int j = 0; j < k; j++) {
        const long slot = tok * k + j;
        acc += gates[slot] * to_float(ys[static_cast<long>(slot_row[slot]) * D + c]);
    }
    out[idx] = from_float<T>(acc);
}

// One thread per (slot, column).
template <typename T>
__global__ void combine_backward_rows_kernel(T* dys, const T* dout, const float* gates,
                                             const int* slot_row, int k, int D, long n) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long slot = idx / D, c = idx % D;
    dys[static_cast<long>(slot_row[slot]) * D + c] =
        from_float<T>(gates[slot] * to_float(dout[(slot / k) * D + c]));
}

// One warp per slot: dgates += dout · y.
template <typename T>
__global__ void combine_backward_gates_kernel(float* dgates, const T* dout, const T* ys,
                                              const int* slot_row, int k, int D, long M) {
    const long slot = static_cast<long>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (slot >= M) return;
    const int lane = threadIdx.x % 32;
    const T* d = dout + (slot / k) * D;
    const T* y = ys + static_cast<long>(slot_row[slot]) * D;
    float dot = 0.0f;
    for (int c = lane; c < D; c += 32) dot += to_float(d[c]) * to_float(y[c]);
    dot = warp_sum(dot);
    if (lane == 0) dgates[slot] += dot;
}

}  // namespace

void moe_plan(const cpu::MoePlan& plan, const int* experts, int N, int k, double* load,
              cudaStream_t stream) {
    if (plan.n_experts <= 0) return;
    moe_plan_kernel<<<plan.n_experts, kPlanThreads, 0, stream>>>(
        plan.offsets, plan.row_token, plan.slot_row, load, experts, N * k, k, plan.n_experts);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void moe_gather(T* xs, const T* x, const cpu::MoePlan& plan, int N, int k, int D,
                cudaStream_t stream) {
    const long n = static_cast<long>(N) * k * D;
    if (n <= 0) return;
    gather_kernel<T><<<ceil_div(n, kThreads), kThreads, 0, stream>>>(xs, x, plan.row_token, D, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void moe_gather_backward(T* dx, const T* dxs, const cpu::MoePlan& plan, int N, int k, int D,
                         cudaStream_t stream) {
    const long n = static_cast<long>(N) * D;
    if (n <= 0) return;
    gather_backward_kernel<T>
        <<<ceil_div(n, kThreads), kThreads, 0, stream>>>(dx, dxs, plan.slot_row, k, D, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void moe_combine(T* out, const T* ys, const float* gates, const cpu::MoePlan& plan, int N, int k,
                 int D, cudaStream_t stream) {
    const long n = static_cast<long>(N) * D;
    if (n <= 0) return;
    combine_kernel<T>
        <<<ceil_div(n, kThreads), kThreads, 0, stream>>>(out, ys, gates, plan.slot_row, k, D, n);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void moe_combine_backward(T* dys, float* dgates, const T* dout, const T* ys, const float* gates,
                          const cpu::MoePlan& plan, int N, int k, int D, cudaStream_t stream) {
    const long M = static_cast<long>(N) * k;
    if (M <= 0) return;
    if (dys) {
        combine_backward_rows_kernel<T><<<ceil_div(M * D, kThreads), kThreads, 0, stream>>>(
            dys, dout, gates, plan.slot_row, k, D, M * D);
        AGPT_CUDA_CHECK_LAUNCH();
    }
    if (dgates) {
        combine_backward_gates_kernel<T><<<ceil_div(M, kWarpsPerBlock), kThreads, 0, stream>>>(
            dgates, dout, ys, plan.slot_row, k, D, M);
        AGPT_CUDA_CHECK_LAUNCH();
    }
}

template <typename T>
void grouped_matmul_forward(Blas& blas, T* out, int ldo, const T* inp, const T* weight,
                            const int* host_offsets, int E, int C, int OC) {
    for (int e = 0; e < E; e++) {
        const int begin = host_offsets[e], rows = host_offsets[e + 1] - begin;
        if (rows == 0) continue;
        gemm<T, T>(blas, false, true, rows, OC, C, 1.0f, inp + static_cast<long>(begin) * C, C,
                   weight + static_cast<long>(e) * OC * C, C, 0.0f,
                   out + static_cast<long>(begin) * ldo, ldo);
    }
}

template <typename T, typename TW>
void grouped_matmul_backward(Blas& blas, T* dinp, TW* dweight, const T* dout, int ldo, const T* inp,
                             const T* weight, const int* host_offsets, int E, int C, int OC) {
    for (int e = 0; e < E; e++) {
        const int begin = host_offsets[e], rows = host_offsets[e + 1] - begin;
        if (rows == 0) continue;
        const T* g = dout + static_cast<long>(begin) * ldo;
        const long wo = static_cast<long>(e) * OC * C;
        if (dinp)
            gemm<T, T>(blas, false, false, rows, C, OC, 1.0f, g, ldo, weight + wo, C, 1.0f,
                       dinp + static_cast<long>(begin) * C, C);
        if (dweight)
            gemm<T, TW>(blas, true, false, OC, C, rows, 1.0f, g, ldo,
                        inp + static_cast<long>(begin) * C, C, 1.0f, dweight + wo, C);
    }
}

#define AGPT_MOE_DISPATCH(T)                                                                     \
    template void moe_gather<T>(T*, const T*, const cpu::MoePlan&, int, int, int, cudaStream_t); \
    template void moe_gather_backward<T>(T*, const T*, const cpu::MoePlan&, int, int, int,       \
                                         cudaStream_t);                                          \
    template void moe_combine<T>(T*, const T*, const float*, const cpu::MoePlan&, int, int, int, \
                                 cudaStream_t);                                                  \
    template void moe_combine_backward<T>(T*, float*, const T*, const T*, const float*,          \
                                          const cpu::MoePlan&, int, int, int, cudaStream_t);     \
    template void grouped_matmul_forward<T>(Blas&, T*, int, const T*, const T*, const int*, int, \
                                            int, int);
AGPT_MOE_DISPATCH(float)
AGPT_MOE_DISPATCH(bf16)
#undef AGPT_MOE_DISPATCH
template void grouped_matmul_backward<float, float>(Blas&, float*, float*, const float*, int,
                                                    const float*, const float*, const int*, int,
                                                    int, int);
template void grouped_matmul_backward<bf16, bf16>(Blas&, bf16*, bf16*, const bf16*, int,
                                                  const bf16*, const bf16*, const int*, int, int,
                                                  int);
template void grouped_matmul_backward<bf16, float>(Blas&, bf16*, float*, const bf16*, int,
                                                   const bf16*, const bf16*, const int*, int, int,
                                                   int);

}  // namespace agpt::cuda
