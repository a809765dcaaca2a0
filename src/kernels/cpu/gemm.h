#pragma once
// Matrix products for linear layers, through BLAS (float: sgemm, double: dgemm).
// Weights are stored as PyTorch's nn.Linear does: weight is (OC, C) and out = inp · weightᵀ.
namespace agpt::cpu {

// out (M,N) = inp (M,K) · weight (N,K)ᵀ; accumulate adds into out instead of overwriting it.
template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, int M, int K, int N,
                    bool accumulate = false);

// Gradients of matmul_forward, accumulated: dinp (M,K) += dout·weight, dweight (N,K) += doutᵀ·inp.
// Either output may be null to skip it.
template <typename T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int M,
                     int K, int N);

// Plain row-major GEMM: C (M,N) = alpha · op(A) · op(B) + beta · C, op = transpose when trans_*.
template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc);

}  // namespace agpt::cpu
