#pragma once
// A tiny CUDA emulator for checking kernel logic on a machine without a GPU: the kernels in
// src/kernels/cuda/*.cu, rewritten by emulate_cu.py (launches become emu::launch calls), are
// compiled by the host compiler with the macros below and run on the CPU. Each CUDA thread is
// a fiber; a block's fibers run round-robin on one OS thread and switch at __syncthreads,
// __syncwarp and warp shuffles, so barrier semantics are exact, and a barrier that not every
// live thread of the block (or warp) reaches is reported as a deadlock. Blocks run one after
// another.
//
// What fails on a GPU fails here too, with a message naming the kernel and an abort:
// - launch configurations the runtime refuses: grid.x outside [1, 2^31-1], grid.y/z outside
//   [1, 65535], blocks outside 1..1024 threads (and blocks that are not 1-D: not emulated);
//   dynamic shared memory above 48 KiB without cudaFuncSetAttribute(kernel,
//   cudaFuncAttributeMaxDynamicSharedMemorySize, >= bytes) on that kernel, or above an H100's
//   227 KiB per block;
// - misaligned vector accesses: cp.async 16 (4), ldmatrix rows, and the kernels' Pack /
//   __nv_bfloat162 loads and stores through detail::vec_ptr (common.cuh);
// - cuBLAS arguments cuBLAS refuses (negative sizes, leading dimensions below the rows stored):
//   an Error, as CUBLAS_STATUS_INVALID_VALUE is on a GPU (emu_gemm.cpp).
// Memory reads that a GPU leaves undefined read garbage here: cudaMalloc'd memory (256-byte
// aligned) and every block's shared memory, static and dynamic, start as 0xFF bytes (NaN for
// fp32 and bf16, -1 for integers). Races between the threads of a block: fibers run in thread
// order in one block and in reverse order in the next, alternating each round between barriers,
// so a read of another thread's write without a barrier between them sees the garbage in some
// block.
// What it cannot check: timing, races that only an interleaving other than thread order or its
// reverse exposes, memory-model subtleties beyond barriers, races between blocks (they run one
// after another), out-of-bounds accesses (host memory, no sanitizer: only a crash shows one),
// the static part of a block's shared memory in its limit, the alignment of vector accesses not
// made through vec_ptr, performance, cuBLAS (GEMMs are naive loops here) and CUB (a
// std::stable_sort here).
//
// Inline PTX cannot run here: the few instructions the kernels use are wrapped in device
// functions (src/kernels/cuda/attention_mma.cuh) that call the stand-ins below when
// AGPT_CUDA_EMU is defined. ldmatrix and mma.sync are warp collectives with the PTX ISA's
// fragment layouts (each lane publishes its operands, then computes its own result from the
// whole warp's); cp.async is a plain copy (its completion waits are no-ops), so a missing wait
// is not detected.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>

#define AGPT_CUDA_EMU 1

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

namespace emu {

struct ThreadCtx {
    uint3 tid, bid;
    dim3 bdim, gdim;
};
extern ThreadCtx* current;  // the running fiber's ids

void sync_block();
void sync_warp();
float shfl_xor(float v, int lane_mask);
float* dynamic_smem();
// A static __shared__ array as the block first reaches its declaration: filled with 0xFF bytes
// (NaN, or -1), as shared memory holds garbage at a block's start.
void poison_shared(void* p, std::size_t bytes);

// Warp collective: every lane of the calling warp gives `bytes` (<= 64) bytes; all[l·bytes..]
// receives lane l's. One warp barrier.
void warp_gather(const void* mine, std::size_t bytes, void* all);
// cp.async.cg ... 16, src-size: 16 bytes, or zeros when !valid.
void cp_async16(void* dst, const void* src, bool valid);
void cp_async4(void* dst, const void* src, bool valid);
// ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: this lane's address is a row of matrix
// lane / 8; r[i] = this lane's pair of matrix i.
void ldmatrix_x4(uint32_t (&r)[4], const void* row, bool trans);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with c = d: exact products, the sum
// in double, rounded once to fp32 (the hardware's internal rounding differs in the last bits).
void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
// Aborts, naming the running kernel, unless p is a multiple of `alignment` (what a GPU's
// vector access of that size needs).
void check_aligned(const void* p, std::size_t alignment, const char* what);

// A kernel's identity for its attributes: the function's address, whether the launch names the
// function, a template instance or a pointer variable.
template <typename F>
const void* kernel_id(F* kernel) {
    return reinterpret_cast<const void*>(kernel);
}
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes).
void set_max_dynamic_smem(const void* kernel, int bytes);

void run_grid(const void* kernel, const char* name, dim3 grid, dim3 block, std::size_t smem,
              const std::function<void()>& body);

template <typename F>
void launch(const void* kernel, const char* name, F&& body, dim3 grid, dim3 block,
            std::size_t smem = 0, cudaStream_t = nullptr) {
    run_grid(kernel, name, grid, block, smem, std::function<void()>(std::forward<F>(body)));
}

}  // namespace emu

#define threadIdx (::emu::current->tid)
#define blockIdx (::emu::current->bid)
#define blockDim (::emu::current->bdim)
#define gridDim (::emu::current->gdim)

inline void __syncthreads() {
    emu::sync_block();
}
inline void __syncwarp(unsigned = 0xffffffffu) {
    emu::sync_warp();
}
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
    return emu::shfl_xor(v, lane_mask);
}
// IEEE-rounded intrinsics: separate host operations (the emulation is built with
// -ffp-contract=off).
inline float __fmul_rn(float a, float b) {
    return a * b;
}
inline float __fadd_rn(float a, float b) {
    return a + b;
}
inline float __fsub_rn(float a, float b) {
    return a - b;
}
inline float __fdiv_rn(float a, float b) {
    return a / b;
}
inline float __fsqrt_rn(float a) {
    return std::sqrt(a);
}
inline float __fmaf_rn(float a, float b, float c) {
    return std::fma(a, b, c);
}
using std::max;
using std::min;

// cuda_runtime.h declares this overload for nvcc only.
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
        emu::set_max_dynamic_smem(emu::kernel_id(kernel), value);
    return cudaSuccess;
}
