#pragma once
// Matrix products through cuBLASLt, with the row-major conventions of kernels/cpu/gemm.h:
// weights stored as nn.Linear does, (OC, C), and out = inp · weightᵀ. Inputs (A, B) are fp32 or
// bf16; products accumulate in fp32 (CUBLAS_COMPUTE_32F: no TF32 for fp32 inputs); the output
// is fp32 or bf16. Instantiated for (float → float), (bf16 → bf16) and (bf16 → float). All run
// on blas.stream().
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// Row-major C (M,N) = alpha · op(A) · op(B) + beta · C, op = transpose when trans_*; A and B
// of type TA, C of type TC. lda/ldb/ldc are row strides in elements, as in cpu::gemm.
template <typename TA, typename TC>
void gemm(Blas& blas, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const TA* A,
          int lda, const TA* B, int ldb, float beta, TC* C, int ldc);

// out (M,N) = inp (M,K) · weight (N,K)ᵀ; accumulate adds into out instead of overwriting it.
template <typename T, typename TO = T>
void matmul_forward(Blas& blas, TO* out, const T* inp, const T* weight, int M, int K, int N,
                    bool accumulate = false);

// Accumulates dinp (M,K) += dout·weight and dweight (N,K) += doutᵀ·inp; either may be null.
// dweight may be fp32 when the rest is bf16 (fp32 gradients of bf16 compute copies).
template <typename T, typename TW = T>
void matmul_backward(Blas& blas, T* dinp, TW* dweight, const T* dout, const T* inp, const T* weight,
                     int M, int K, int N);

}  // namespace agpt::cuda
