#pragma once
// Dispatch and combine of a mixture-of-experts layer on the GPU, as kernels/cpu/moe_dispatch.h:
// the N·k (token, expert) assignments sorted by expert with the CPU's stable order (a counting
// sort, no atomics), each expert's SwiGLU as GEMMs over its contiguous rows, and the gated
// combine. cpu::MoePlan's arrays (offsets, row_token, slot_row) live on the device here.
// Gates are fp32 (kernels/cuda/router.h); rows are fp32 or bf16 (T) with fp32 arithmetic.
//
// The grouped GEMMs issue one cuBLASLt call per expert, so they need the row offsets on the host
// (host_offsets, E+1): the caller copies plan.offsets back once per forward.
#include "kernels/cpu/moe_dispatch.h"
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// Fills plan (device arrays, plan.n_experts set) from experts (N,k), as cpu::moe_plan; load (E,
// may be null) += rows per expert.
void moe_plan(const cpu::MoePlan& plan, const int* experts, int N, int k, double* load,
              cudaStream_t stream = nullptr);

// xs (N·k, D): row r = x[row_token[r]].
template <typename T>
void moe_gather(T* xs, const T* x, const cpu::MoePlan& plan, int N, int k, int D,
                cudaStream_t stream = nullptr);
// Accumulates dx (N,D) += Σ over token n's rows of dxs, in slot order.
template <typename T>
void moe_gather_backward(T* dx, const T* dxs, const cpu::MoePlan& plan, int N, int k, int D,
                         cudaStream_t stream = nullptr);

// out (N,D) += Σ_j gates[n·k+j] · ys[slot_row[n·k+j]].
template <typename T>
void moe_combine(T* out, const T* ys, const float* gates, const cpu::MoePlan& plan, int N, int k,
                 int D, cudaStream_t stream = nullptr);
// dys (N·k, D) = gate · dout (overwritten); dgates (N,k) += dout · y (either may be null).
template <typename T>
void moe_combine_backward(T* dys, float* dgates, const T* dout, const T* ys, const float* gates,
                          const cpu::MoePlan& plan, int N, int k, int D,
                          cudaStream_t stream = nullptr);

// For each expert e with rows: out rows of e (M_e, OC) = inp rows of e (M_e, C) · weight[e]
// (OC, C)ᵀ, written into columns [0, OC) of rows of stride ldo.
template <typename T>
void grouped_matmul_forward(Blas& blas, T* out, int ldo, const T* inp, const T* weight,
                            const int* host_offsets, int E, int C, int OC);
// Accumulates dinp (rows of C) and dweight (E, OC, C; TW = fp32 gradients of bf16 weights
// allowed) from dout (rows of stride ldo); either may be null. Experts without rows get no
// update.
template <typename T, typename TW = T>
void grouped_matmul_backward(Blas& blas, T* dinp, TW* dweight, const T* dout, int ldo, const T* inp,
                             const T* weight, const int* host_offsets, int E, int C, int OC);

}  // namespace agpt::cuda
