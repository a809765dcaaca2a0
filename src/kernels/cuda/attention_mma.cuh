#pragma once
// The few tensor-core and async-copy instructions the flash-attention kernels use (sm_80+
// PTX, fine on sm_90), as small device functions. In the CPU emulation (tests/cuda/emu,
// AGPT_CUDA_EMU) each is a warp-collective stand-in with the PTX ISA's fragment layouts.
//
// Fragments of mma.m16n8k16 with bf16 inputs and fp32 accumulators, lane = 4·g + t:
//   A (16×16, row-major) a[0..3]: (row g, cols 2t, 2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)
//   B (16×8, k × n)      b[0..1]: (rows 2t, 2t+1, col g), (rows 2t+8, 2t+9, col g)
//   C (16×8, fp32)       c[0..3]: (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1)
// A .b32 register holds two bf16, the lower column (or row) in the low half.
#include <cuda_bf16.h>

#include <cstdint>

namespace agpt::cuda::detail {

#ifndef AGPT_CUDA_EMU
__device__ __forceinline__ uint32_t smem_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// 16 bytes global → shared without passing through registers; zero-filled when !valid (src is
// then not read). Complete after cp_async_commit and cp_async_wait<n>.
__device__ __forceinline__ void cp_async16(void* dst_smem, const void* src, bool valid) {
#ifdef AGPT_CUDA_EMU
    ::emu::cp_async16(dst_smem, src, valid);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(dst_smem)),
                 "l"(src), "r"(valid ? 16 : 0)
                 : "memory");
#endif
}
// 4 bytes global → shared, likewise (zero-filled when !valid).
__device__ __forceinline__ void cp_async4(void* dst_smem, const void* src, bool valid) {
#ifdef AGPT_CUDA_EMU
    ::emu::cp_async4(dst_smem, src, valid);
#else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_address(dst_smem)),
                 "l"(src), "r"(valid ? 4 : 0)
                 : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifndef AGPT_CUDA_EMU
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifndef AGPT_CUDA_EMU
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// ldmatrix .x4: lanes 8i..8i+7 give the row addresses (16 bytes each) of 8×8 matrix i; r[i] is
// this lane's element pair of matrix i: (row g, cols 2t, 2t+1), or with .trans (rows 2t, 2t+1,
// col g).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row_smem) {
#ifdef AGPT_CUDA_EMU
    ::emu::ldmatrix_x4(r, row_smem, false);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(row_smem)));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row_smem) {
#ifdef AGPT_CUDA_EMU
    ::emu::ldmatrix_x4(r, row_smem, true);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_address(row_smem)));
#endif
}

// d += A·B (16×8×16, bf16 inputs, fp32 accumulation).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
#ifdef AGPT_CUDA_EMU
    const uint32_t b[2] = {b0, b1};
    ::emu::mma_bf16_16816(d, a, b);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two floats as a bf16 pair (round to nearest even), lo in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16(lo))) |
           (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16(hi))) << 16);
}

}  // namespace agpt::cuda::detail
