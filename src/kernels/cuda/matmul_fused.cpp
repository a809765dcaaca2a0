#include <cstdint>

#include "kernels/cuda/bias.h"
#include "kernels/cuda/gelu.h"
#include "kernels/cuda/gemm.h"

namespace agpt::cuda {

namespace {

using detail::Epilogue;

bool aligned(const void* p) {
    return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

// cuBLASLt's epilogue operands: 16-byte aligned pointers, the aux matrix's rows a multiple of 8
// elements; AGPT_GEMM_EPILOGUE=none keeps every product on the unfused path.
bool epilogues_allowed(std::initializer_list<const void*> pointers, int ld_aux = 8) {
    if (env_is("AGPT_GEMM_EPILOGUE", "none") || ld_aux % 8 != 0) return false;
    for (const void* p : pointers)
        if (p && !aligned(p)) return false;
    return true;
}

}  // namespace

template <typename T>
void matmul_forward_bias(Blas& blas, T* out, const T* inp, const T* weight, const T* bias,
                         const T* residual, int M, int K, int N) {
    if (M == 0 || N == 0) return;
    if (K > 0 && epilogues_allowed({out, inp, weight, bias, residual}) &&
        detail::gemm_epilogue<T>(blas, bias ? Epilogue::bias : Epilogue::none, true, M, N, K, inp,
                                 weight, residual ? 1.0f : 0.0f, residual ? residual : out, out,
                                 bias, nullptr, 0))
        return;
    if (bias)
        bias_forward<T>(out, residual, bias, M, N, blas.stream());
    else if (residual && residual != out)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(out, residual, sizeof(T) * static_cast<std::size_t>(M) * N,
                                        cudaMemcpyDeviceToDevice, blas.stream()));
    matmul_forward<T>(blas, out, inp, weight, M, K, N, bias || residual);
}

template <typename T>
void matmul_forward_bias_gelu(Blas& blas, T* out, T* pre, const T* inp, const T* weight,
                              const T* bias, int M, int K, int N) {
    if (M == 0 || N == 0) return;
    if (K > 0 && epilogues_allowed({out, pre, inp, weight, bias}, N) &&
        detail::gemm_epilogue<T>(blas, Epilogue::gelu_bias, true, M, N, K, inp, weight, 0.0f, out,
                                 out, bias, pre, N))
        return;
    matmul_forward<T>(blas, pre, inp, weight, M, K, N);
    bias_gelu_forward<T>(out, pre, bias, M, N, blas.stream());
}

template <typename T>
void matmul_backward_dgelu(Blas& blas, T* dinp, const T* dout, const T* weight, const T* pre, int M,
                           int K, int N, float* dbias) {
    if (M == 0 || K == 0) return;
    const bool fuse = N > 0 && epilogues_allowed({dinp, dout, weight, pre}, K);
    if (fuse && dbias) {
        StreamScratch sums(sizeof(float) * static_cast<std::size_t>(K), blas.stream());
        if (detail::gemm_epilogue<T>(blas, Epilogue::dgelu_bgrad, false, M, K, N, dout, weight,
                                     0.0f, dinp, dinp, nullptr, const_cast<T*>(pre), K,
                                     sums.as<float>())) {
            add_block_sums(dbias, sums.as<float>(), 1, K, blas.stream());
            return;
        }
    }
    if (!(fuse && detail::gemm_epilogue<T>(blas, Epilogue::dgelu, false, M, K, N, dout, weight,
                                           0.0f, dinp, dinp, nullptr, const_cast<T*>(pre), K))) {
        // In place: each element of the product is read by the GELU gradient, then overwritten.
        gemm<T, T>(blas, false, false, M, K, N, 1.0f, dout, N, weight, K, 0.0f, dinp, K);
        gelu_backward<T>(dinp, dinp, pre, static_cast<long>(M) * K, false, blas.stream());
    }
    if (dbias) bias_backward<T>(dbias, dinp, M, K, blas.stream());
}

template <typename T>
void matmul_backward_weight_bias(Blas& blas, float* dweight, float* dbias, const T* dout,
                                 const T* inp, int M, int K, int N) {
    if (N == 0 || K == 0) return;
    if (M > 0 && epilogues_allowed({dweight, dout, inp})) {
        StreamScratch sums(sizeof(float) * static_cast<std::size_t>(N), blas.stream());
        if (detail::gemm_weight_bgrad<T>(blas, M, N, K, dout, inp, dweight, sums.as<float>())) {
            add_block_sums(dbias, sums.as<float>(), 1, N, blas.stream());
            return;
        }
    }
    gemm<T, float>(blas, true, false, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
    bias_backward<T>(dbias, dout, M, N, blas.stream());
}

template void matmul_forward_bias<float>(Blas&, float*, const float*, const float*, const float*,
                                         const float*, int, int, int);
template void matmul_forward_bias<bf16>(Blas&, bf16*, const bf16*, const bf16*, const bf16*,
                                        const bf16*, int, int, int);
template void matmul_forward_bias_gelu<float>(Blas&, float*, float*, const float*, const float*,
                                              const float*, int, int, int);
template void matmul_forward_bias_gelu<bf16>(Blas&, bf16*, bf16*, const bf16*, const bf16*,
                                             const bf16*, int, int, int);
template void matmul_backward_dgelu<float>(Blas&, float*, const float*, const float*, const float*,
                                           int, int, int, float*);
template void matmul_backward_dgelu<bf16>(Blas&, bf16*, const bf16*, const bf16*, const bf16*, int,
                                          int, int, float*);
template void matmul_backward_weight_bias<float>(Blas&, float*, float*, const float*, const float*,
                                                 int, int, int);
template void matmul_backward_weight_bias<bf16>(Blas&, float*, float*, const bf16*, const bf16*,
                                                int, int, int);

}  // namespace agpt::cuda
