#include "kernels/cpu/gemm.h"

#include <cblas.h>

namespace agpt::cpu {

namespace {

CBLAS_TRANSPOSE op(bool trans) {
    return trans ? CblasTrans : CblasNoTrans;
}

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc) {
    cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A,
                  int lda, const double* B, int ldb, double beta, double* C, int ldc) {
    cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, int M, int K, int N, bool accumulate) {
    gemm<T>(false, true, M, N, K, T(1), inp, K, weight, K, accumulate ? T(1) : T(0), out, N);
}

template <typename T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int M,
                     int K, int N) {
    if (dinp) gemm<T>(false, false, M, K, N, T(1), dout, N, weight, K, T(1), dinp, K);
    if (dweight) gemm<T>(true, false, N, K, M, T(1), dout, N, inp, K, T(1), dweight, K);
}

template void matmul_forward<float>(float*, const float*, const float*, int, int, int, bool);
template void matmul_forward<double>(double*, const double*, const double*, int, int, int, bool);
template void matmul_backward<float>(float*, float*, const float*, const float*, const float*, int,
                                     int, int);
template void matmul_backward<double>(double*, double*, const double*, const double*, const double*,
                                      int, int, int);

}  // namespace agpt::cpu
