#include "kernels/cuda/gemm.h"
#include "kernels/cuda/cublas_loader.h"

#include <array>
#include <cstdint>
#include <map>
#include <mutex>

namespace agpt::cuda {

namespace {

template <typename T>
constexpr cudaDataType_t data_type();
template <>
constexpr cudaDataType_t data_type<float>() {
    return CUDA_R_32F;
}
template <>
constexpr cudaDataType_t data_type<bf16>() {
    return CUDA_R_16BF;
}

// The largest power of two (<= 256) dividing the address. cuBLASLt assumes 256-byte aligned
// operands unless told otherwise; chunked callers pass interior pointers.
std::uint32_t alignment(const void* p) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    std::uint32_t al = 256;
    while (al > 1 && a % al != 0) al /= 2;
    return al;
}

struct LtDescriptors {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    ~LtDescriptors() {
        if (pref) cublas().LtMatmulPreferenceDestroy(pref);
        if (c) cublas().LtMatrixLayoutDestroy(c);
        if (b) cublas().LtMatrixLayoutDestroy(b);
        if (a) cublas().LtMatrixLayoutDestroy(a);
        if (op) cublas().LtMatmulDescDestroy(op);
    }
};

// The heuristic's choice per shape, types and alignment (a lookup costs tens of µs; a training
// step repeats the same few shapes). found = false: cuBLASLt has no algorithm, use cuBLAS.
struct AlgoChoice {
    bool found = false;
    cublasLtMatmulAlgo_t algo{};
};
using AlgoKey = std::array<long long, 20>;
std::mutex algo_mutex;
std::map<AlgoKey, AlgoChoice> algo_cache;

// An epilogue of cuBLASLt's and its operands (column-major: the bias runs along D's rows).
struct LtEpilogue {
    cublasLtEpilogue_t mode = CUBLASLT_EPILOGUE_DEFAULT;
    const void* bias = nullptr;  // the bias, or the bias gradient the BGRAD modes write
    cudaDataType_t bias_type = CUDA_R_32F;
    const void* aux = nullptr;
    std::int64_t ld_aux = 0;
};

// Column-major D (m×n, ldc) = epilogue(alpha · op(A) · op(B) + beta · C) through cuBLASLt; C
// may be D. Returns false when the heuristic offers no algorithm for this problem.
bool lt_gemm(Blas& blas, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
             float alpha, const void* A, cudaDataType_t ab_type, int lda, const void* B, int ldb,
             float beta, const void* C, void* D, cudaDataType_t c_type, int ldc,
             const LtEpilogue& ep = {}) {
    LtDescriptors d;
    AGPT_CUBLAS_CHECK(cublas().LtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    AGPT_CUBLAS_CHECK(
        cublas().LtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    AGPT_CUBLAS_CHECK(
        cublas().LtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (ep.mode != CUBLASLT_EPILOGUE_DEFAULT) {
        AGPT_CUBLAS_CHECK(cublas().LtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                            &ep.mode, sizeof ep.mode));
        if (ep.bias) {
            AGPT_CUBLAS_CHECK(cublas().LtMatmulDescSetAttribute(
                d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &ep.bias, sizeof ep.bias));
            AGPT_CUBLAS_CHECK(cublas().LtMatmulDescSetAttribute(
                d.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &ep.bias_type, sizeof ep.bias_type));
        }
        if (ep.aux) {
            AGPT_CUBLAS_CHECK(cublas().LtMatmulDescSetAttribute(
                d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &ep.aux, sizeof ep.aux));
            AGPT_CUBLAS_CHECK(cublas().LtMatmulDescSetAttribute(
                d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ep.ld_aux, sizeof ep.ld_aux));
        }
    }
    const bool na = ta == CUBLAS_OP_N, nb = tb == CUBLAS_OP_N;
    AGPT_CUBLAS_CHECK(cublas().LtMatrixLayoutCreate(&d.a, ab_type, na ? m : k, na ? k : m, lda));
    AGPT_CUBLAS_CHECK(cublas().LtMatrixLayoutCreate(&d.b, ab_type, nb ? k : n, nb ? n : k, ldb));
    AGPT_CUBLAS_CHECK(cublas().LtMatrixLayoutCreate(&d.c, c_type, m, n, ldc));

    const std::uint32_t al_a = alignment(A), al_b = alignment(B),
                        al_c = std::min(alignment(C), alignment(D));
    const AlgoKey key{ta,
                      tb,
                      m,
                      n,
                      k,
                      lda,
                      ldb,
                      ldc,
                      ab_type,
                      c_type,
                      al_a,
                      al_b,
                      al_c,
                      static_cast<long long>(blas.workspace_bytes()),
                      beta != 0.0f,
                      ep.mode,
                      ep.bias ? alignment(ep.bias) : 0,
                      ep.bias ? ep.bias_type : -1,
                      ep.aux ? alignment(ep.aux) : 0,
                      ep.ld_aux};
    AlgoChoice choice;
    bool cached = false;
    {
        std::lock_guard<std::mutex> lock(algo_mutex);
        const auto it = algo_cache.find(key);
        if (it != algo_cache.end()) {
            choice = it->second;
            cached = true;
        }
    }
    if (!cached) {
        AGPT_CUBLAS_CHECK(cublas().LtMatmulPreferenceCreate(&d.pref));
        const std::uint64_t ws = blas.workspace_bytes();
        AGPT_CUBLAS_CHECK(cublas().LtMatmulPreferenceSetAttribute(
            d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> aligns[] = {
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al_a},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al_b},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al_c},
            {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al_c}};
        for (const auto& [attr, value] : aligns)
            AGPT_CUBLAS_CHECK(
                cublas().LtMatmulPreferenceSetAttribute(d.pref, attr, &value, sizeof value));
        cublasLtMatmulHeuristicResult_t result{};
        int returned = 0;
        const cublasStatus_t st = cublas().LtMatmulAlgoGetHeuristic(
            blas.lt(), d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result, &returned);
        choice.found = st == CUBLAS_STATUS_SUCCESS && returned > 0;
        if (choice.found) choice.algo = result.algo;
        std::lock_guard<std::mutex> lock(algo_mutex);
        algo_cache.emplace(key, choice);
    }
    if (!choice.found) return false;
    const cublasStatus_t st =
        cublas().LtMatmul(blas.lt(), d.op, &alpha, A, d.a, B, d.b, &beta, C, d.c, D, d.c,
                          &choice.algo, blas.workspace(), blas.workspace_bytes(), blas.stream());
    // An epilogue the heuristic offered but the library then refuses for these operands: the
    // unfused path from now on, for this key.
    if (ep.mode != CUBLASLT_EPILOGUE_DEFAULT &&
        (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE)) {
        std::lock_guard<std::mutex> lock(algo_mutex);
        algo_cache[key].found = false;
        return false;
    }
    check_cublas(st, "cublasLtMatmul", __FILE__, __LINE__);
    return true;
}

}  // namespace

// Row-major X (r×c, ld) is column-major Xᵀ (c×r, ld) in the same memory, so row-major
// C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands, keep each one's
// transpose flag, and swap M and N.
template <typename TA, typename TC>
void gemm(Blas& blas, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const TA* A,
          int lda, const TA* B, int ldb, float beta, TC* C, int ldc) {
    if (M == 0 || N == 0) return;
    const cublasOperation_t ta = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (K > 0 && lt_gemm(blas, ta, tb, N, M, K, alpha, B, data_type<TA>(), ldb, A, lda, beta, C, C,
                         data_type<TC>(), ldc))
        return;
    // cuBLAS has a kernel for every shape (and scales C by beta when K is 0).
    AGPT_CUBLAS_CHECK(cublas().GemmEx(blas.blas(), ta, tb, N, M, K, &alpha, B, data_type<TA>(), ldb,
                                      A, data_type<TA>(), lda, &beta, C, data_type<TC>(), ldc,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
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

// Row-major D = A·Bᵀ (A·B) is column-major Dᵀ = B·Aᵀ (Bᵀ·Aᵀ): the row-major bias along D's
// columns runs along Dᵀ's rows, as cuBLASLt's does; aux is row-major (M, ld_aux) likewise.
template <typename T>
bool gemm_epilogue(Blas& blas, Epilogue epilogue, bool b_nk, int M, int N, int K, const T* A,
                   const T* B, float beta, const T* C, T* D, const T* bias, T* aux, int ld_aux,
                   float* bgrad) {
    LtEpilogue ep;
    switch (epilogue) {
        case Epilogue::none:
            break;
        case Epilogue::bias:
            ep.mode = CUBLASLT_EPILOGUE_BIAS;
            break;
        case Epilogue::gelu_bias:
            ep.mode = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
            break;
        case Epilogue::dgelu:
            ep.mode = CUBLASLT_EPILOGUE_DGELU;
            break;
        case Epilogue::dgelu_bgrad:
            ep.mode = CUBLASLT_EPILOGUE_DGELU_BGRAD;
            break;
    }
    if (epilogue == Epilogue::bias || epilogue == Epilogue::gelu_bias) {
        ep.bias = bias;
        ep.bias_type = data_type<T>();
    } else if (epilogue == Epilogue::dgelu_bgrad) {
        ep.bias = bgrad;  // fp32: the gradient of an fp32 master bias
    }
    ep.aux = aux;
    ep.ld_aux = ld_aux;
    const cublasOperation_t ta = b_nk ? CUBLAS_OP_T : CUBLAS_OP_N;
    return lt_gemm(blas, ta, CUBLAS_OP_N, N, M, K, 1.0f, B, data_type<T>(), b_nk ? K : N, A, K,
                   beta, C, D, data_type<T>(), N, ep);
}

// Row-major dW (N,K) += doutᵀ·inp is column-major dWᵀ (K,N) += inpᵀ(K,M)·dout(M,N) with k = M:
// BGRADB sums B (dout) over k, one value per column of dWᵀ (per row of dW).
template <typename T>
bool gemm_weight_bgrad(Blas& blas, int M, int N, int K, const T* dout, const T* inp, float* dweight,
                       float* bgrad) {
    LtEpilogue ep;
    ep.mode = CUBLASLT_EPILOGUE_BGRADB;
    ep.bias = bgrad;
    return lt_gemm(blas, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, 1.0f, inp, data_type<T>(), K, dout, N,
                   1.0f, dweight, dweight, CUDA_R_32F, K, ep);
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
