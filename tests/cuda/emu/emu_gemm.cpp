// Naive row-major GEMMs standing in for cuBLASLt in the CPU emulation (same interface as
// src/kernels/cuda/gemm.h, fp32 accumulation, one rounding to TC).
#include "cuda_emu.h"
#include "kernels/cuda/gemm.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace agpt::cuda {

namespace {
float f(float x) {
    return x;
}
float f(bf16 x) {
    return __bfloat162float(x);
}
template <typename T>
T to(float x) {
    if constexpr (std::is_same_v<T, float>)
        return x;
    else
        return __float2bfloat16(x);
}

// The argument checks of cublasGemmEx and cublasLtMatrixLayoutCreate (CUBLAS_STATUS_INVALID_VALUE,
// which the real wrapper turns into an Error): sizes >= 0, each leading dimension at least
// max(1, the row length of the matrix as stored).
void check_gemm_arguments(bool trans_a, bool trans_b, int M, int N, int K, int lda, int ldb,
                          int ldc) {
    std::string bad;
    if (M < 0 || N < 0 || K < 0) bad += " M, N, K >= 0;";
    if (lda < std::max(1, trans_a ? M : K)) bad += " lda >= max(1, trans_a ? M : K);";
    if (ldb < std::max(1, trans_b ? K : N)) bad += " ldb >= max(1, trans_b ? K : N);";
    if (ldc < std::max(1, N)) bad += " ldc >= max(1, N);";
    if (bad.empty()) return;
    const std::string call = "gemm(trans_a=" + std::to_string(trans_a) +
                             ", trans_b=" + std::to_string(trans_b) + ", M=" + std::to_string(M) +
                             ", N=" + std::to_string(N) + ", K=" + std::to_string(K) +
                             ", lda=" + std::to_string(lda) + ", ldb=" + std::to_string(ldb) +
                             ", ldc=" + std::to_string(ldc) + ") violates" + bad;
    fail_cublas(CUBLAS_STATUS_INVALID_VALUE, call.c_str(), __FILE__, __LINE__);
}

}  // namespace

template <typename TA, typename TC>
void gemm(Blas&, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const TA* A, int lda,
          const TA* B, int ldb, float beta, TC* C, int ldc) {
    check_gemm_arguments(trans_a, trans_b, M, N, K, lda, ldb, ldc);
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float acc = 0.0f;
            for (int k = 0; k < K; ++k)
                acc += f(trans_a ? A[static_cast<long>(k) * lda + i]
                                 : A[static_cast<long>(i) * lda + k]) *
                       f(trans_b ? B[static_cast<long>(j) * ldb + k]
                                 : B[static_cast<long>(k) * ldb + j]);
            TC& c = C[static_cast<long>(i) * ldc + j];
            c = to<TC>(alpha * acc + (beta != 0.0f ? beta * f(c) : 0.0f));
        }
}

template <typename T, typename TO>
void matmul_forward(Blas& blas, TO* out, const T* inp, const T* weight, int M, int K, int N,
                    bool accumulate) {
    gemm<T, TO>(blas, false, true, M, N, K, 1.0f, inp, K, weight, K, accumulate ? 1.0f : 0.0f, out,
                N);
}

template <typename T, typename TW>
void matmul_backward(Blas& blas, T* dinp, TW* dweight, const T* dout, const T* inp, const T* weight,
                     int M, int K, int N) {
    if (dinp) gemm<T, T>(blas, false, false, M, K, N, 1.0f, dout, N, weight, K, 1.0f, dinp, K);
    if (dweight) gemm<T, TW>(blas, true, false, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
}

namespace detail {

namespace {
constexpr float kSqrt2OverPi = 0.79788456080286535588f;
constexpr float kCubic = 0.044715f;
float gelu(float x) {
    return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x)));
}
float gelu_grad(float x) {
    const float t = std::tanh(kSqrt2OverPi * (x + kCubic * x * x * x));
    return 0.5f * (1.0f + t) +
           0.5f * x * (1.0f - t * t) * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
}
}  // namespace

// cuBLASLt's epilogues as its documentation defines them: on the fp32 value of the product
// (+ beta · C), one rounding per stored matrix; bias gradients summed from the fp32 values.
template <typename T>
bool gemm_epilogue(Blas&, Epilogue epilogue, bool b_nk, int M, int N, int K, const T* A, const T* B,
                   float beta, const T* C, T* D, const T* bias, T* aux, int ld_aux, float* bgrad) {
    check_gemm_arguments(false, b_nk, M, N, K, K, b_nk ? K : N, N);
    const bool uses_aux = epilogue == Epilogue::gelu_bias || epilogue == Epilogue::dgelu ||
                          epilogue == Epilogue::dgelu_bgrad;
    if (uses_aux && ld_aux < N)
        fail_cublas(CUBLAS_STATUS_INVALID_VALUE, "gemm_epilogue: ld_aux < N", __FILE__, __LINE__);
    if (epilogue == Epilogue::dgelu_bgrad) std::fill(bgrad, bgrad + N, 0.0f);
    // D may be C: each row's results are formed before any of them is stored.
    std::vector<float> row(static_cast<std::size_t>(N));
    for (int i = 0; i < M; ++i) {
        for (int j = 0; j < N; ++j) {
            float acc = 0.0f;
            for (int k = 0; k < K; ++k)
                acc += f(A[static_cast<long>(i) * K + k]) *
                       f(b_nk ? B[static_cast<long>(j) * K + k] : B[static_cast<long>(k) * N + j]);
            if (beta != 0.0f) acc += beta * f(C[static_cast<long>(i) * N + j]);
            if (epilogue == Epilogue::bias || epilogue == Epilogue::gelu_bias) acc += f(bias[j]);
            row[j] = acc;
        }
        for (int j = 0; j < N; ++j) {
            const float v = row[j];
            T& d = D[static_cast<long>(i) * N + j];
            switch (epilogue) {
                case Epilogue::none:
                case Epilogue::bias:
                    d = to<T>(v);
                    break;
                case Epilogue::gelu_bias:
                    aux[static_cast<long>(i) * ld_aux + j] = to<T>(v);
                    d = to<T>(gelu(v));
                    break;
                case Epilogue::dgelu:
                case Epilogue::dgelu_bgrad: {
                    const float g = v * gelu_grad(f(aux[static_cast<long>(i) * ld_aux + j]));
                    d = to<T>(g);
                    if (epilogue == Epilogue::dgelu_bgrad) bgrad[j] += g;
                    break;
                }
            }
        }
    }
    return true;
}

template <typename T>
bool gemm_weight_bgrad(Blas& blas, int M, int N, int K, const T* dout, const T* inp, float* dweight,
                       float* bgrad) {
    gemm<T, float>(blas, true, false, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
    for (int j = 0; j < N; ++j) {
        float s = 0.0f;
        for (int i = 0; i < M; ++i) s += f(dout[static_cast<long>(i) * N + j]);
        bgrad[j] = s;
    }
    return true;
}

template bool gemm_epilogue<float>(Blas&, Epilogue, bool, int, int, int, const float*, const float*,
                                   float, const float*, float*, const float*, float*, int, float*);
template bool gemm_epilogue<bf16>(Blas&, Epilogue, bool, int, int, int, const bf16*, const bf16*,
                                  float, const bf16*, bf16*, const bf16*, bf16*, int, float*);
template bool gemm_weight_bgrad<float>(Blas&, int, int, int, const float*, const float*, float*,
                                       float*);
template bool gemm_weight_bgrad<bf16>(Blas&, int, int, int, const bf16*, const bf16*, float*,
                                      float*);

}  // namespace detail

template void gemm<float, float>(Blas&, bool, bool, int, int, int, float, const float*, int,
                                 const float*, int, float, float*, int);
template void gemm<bf16, bf16>(Blas&, bool, bool, int, int, int, float, const bf16*, int,
                               const bf16*, int, float, bf16*, int);
template void gemm<bf16, float>(Blas&, bool, bool, int, int, int, float, const bf16*, int,
                                const bf16*, int, float, float*, int);
template void matmul_forward<float, float>(Blas&, float*, const float*, const float*, int, int, int,
                                           bool);
template void matmul_forward<bf16, bf16>(Blas&, bf16*, const bf16*, const bf16*, int, int, int,
                                         bool);
template void matmul_forward<bf16, float>(Blas&, float*, const bf16*, const bf16*, int, int, int,
                                          bool);
template void matmul_backward<float, float>(Blas&, float*, float*, const float*, const float*,
                                            const float*, int, int, int);
template void matmul_backward<bf16, bf16>(Blas&, bf16*, bf16*, const bf16*, const bf16*,
                                          const bf16*, int, int, int);
template void matmul_backward<bf16, float>(Blas&, bf16*, float*, const bf16*, const bf16*,
                                           const bf16*, int, int, int);

}  // namespace agpt::cuda
