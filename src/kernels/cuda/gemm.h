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

// ---- matrix products with their neighbouring elementwise ops fused in (matmul_fused.cpp) ----
// One GEMM with a cuBLASLt epilogue where cuBLASLt has one for the shape, types and alignment;
// otherwise (and always under AGPT_GEMM_EPILOGUE=none, read at each call, for comparison) the
// plain GEMM and the separate kernel, with the same result up to the epilogue's single rounding.
// The fusions spare a write and a read of the output per op: GPT-2's biases, GELU and residual
// adds, the transformer's residual adds.

// out (M,N) = inp (M,K) · weight (N,K)ᵀ + bias (N) + residual (M,N); bias and residual may be
// null; residual may be out (an accumulate).
template <typename T>
void matmul_forward_bias(Blas& blas, T* out, const T* inp, const T* weight, const T* bias,
                         const T* residual, int M, int K, int N);

// pre (M,N) = inp · weightᵀ + bias (the GELU's input, saved for backward) and out (M,N) =
// gelu(pre), the tanh form of kernels/cuda/gelu.h.
template <typename T>
void matmul_forward_bias_gelu(Blas& blas, T* out, T* pre, const T* inp, const T* weight,
                              const T* bias, int M, int K, int N);

// dinp (M,K) = (dout (M,N) · weight (N,K)) ⊙ gelu′(pre (M,K)): the input gradient of a GELU
// followed by a linear layer, overwritten (not accumulated). With dbias, also dbias (K, fp32) +=
// Σ_rows dinp: the gradient of the bias before the GELU.
template <typename T>
void matmul_backward_dgelu(Blas& blas, T* dinp, const T* dout, const T* weight, const T* pre, int M,
                           int K, int N, float* dbias = nullptr);

// A linear layer's parameter gradients: dweight (N,K, fp32) += dout (M,N)ᵀ · inp (M,K) and
// dbias (N, fp32) += Σ_rows dout.
template <typename T>
void matmul_backward_weight_bias(Blas& blas, float* dweight, float* dbias, const T* dout,
                                 const T* inp, int M, int K, int N);

namespace detail {

enum class Epilogue { none, bias, gelu_bias, dgelu, dgelu_bgrad };

// Row-major D (M,N) = epilogue(A (M,K) · B (N,K)ᵀ when b_nk, else A · B (K,N), + beta · C): bias
// adds bias (N) to every row (the others ignore it); gelu_bias stores the
// pre-activation v = A·Bᵀ + bias into aux (ld_aux) and D = gelu(v); dgelu takes D = v ⊙
// gelu′(aux), and dgelu_bgrad also bgrad (N, fp32) = Σ_rows of that (written, not added).
// fp32 accumulation, one rounding to T. C may be D. Returns false, having done nothing, where
// cuBLASLt offers no algorithm. matmul_fused.cpp checks the operands' 16-byte alignment and
// ld_aux % 8 before calling.
template <typename T>
bool gemm_epilogue(Blas& blas, Epilogue epilogue, bool b_nk, int M, int N, int K, const T* A,
                   const T* B, float beta, const T* C, T* D, const T* bias, T* aux, int ld_aux,
                   float* bgrad = nullptr);

// Row-major dweight (N,K, fp32) += dout (M,N)ᵀ · inp (M,K) and bgrad (N, fp32) = Σ_rows dout
// (written, not added): cuBLASLt's BGRADB epilogue. Returns false, having done nothing, where
// cuBLASLt offers no algorithm.
template <typename T>
bool gemm_weight_bgrad(Blas& blas, int M, int N, int K, const T* dout, const T* inp, float* dweight,
                       float* bgrad);

}  // namespace detail

}  // namespace agpt::cuda
