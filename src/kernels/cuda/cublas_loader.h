#pragma once
// cuBLAS and cuBLASLt, resolved from their shared libraries on first use (dlopen) instead of
// linked: loading libcublasLt costs about 215 MB of resident memory and 0.13 s at every start
// of agpt, though only GPU work needs it (`agpt models` went from 17 MB to 233 MB when the
// trainer came to reference the GPU model). Call through cublas() with the library's own
// argument types:
//   AGPT_CUBLAS_CHECK(cublas().LtCreate(&handle));
#include <cublasLt.h>
#include <cublas_v2.h>

namespace agpt::cuda {

struct CublasApi {
    decltype(&::cublasLtCreate) LtCreate;
    decltype(&::cublasLtDestroy) LtDestroy;
    decltype(&::cublasLtMatmul) LtMatmul;
    decltype(&::cublasLtMatmulAlgoGetHeuristic) LtMatmulAlgoGetHeuristic;
    decltype(&::cublasLtMatmulDescCreate) LtMatmulDescCreate;
    decltype(&::cublasLtMatmulDescDestroy) LtMatmulDescDestroy;
    decltype(&::cublasLtMatmulDescSetAttribute) LtMatmulDescSetAttribute;
    decltype(&::cublasLtMatmulPreferenceCreate) LtMatmulPreferenceCreate;
    decltype(&::cublasLtMatmulPreferenceDestroy) LtMatmulPreferenceDestroy;
    decltype(&::cublasLtMatmulPreferenceSetAttribute) LtMatmulPreferenceSetAttribute;
    decltype(&::cublasLtMatrixLayoutCreate) LtMatrixLayoutCreate;
    decltype(&::cublasLtMatrixLayoutDestroy) LtMatrixLayoutDestroy;
    decltype(&::cublasCreate) Create;
    decltype(&::cublasDestroy) Destroy;
    decltype(&::cublasSetStream) SetStream;
    decltype(&::cublasSetWorkspace) SetWorkspace;
    // The C entry point (C++ also sees an inline overload taking cudaDataType as compute type).
    cublasStatus_t (*GemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                             const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                             int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                             cublasGemmAlgo_t);
    decltype(&::cublasGetStatusName) GetStatusName;
    decltype(&::cublasGetStatusString) GetStatusString;
};

// The entry points, loaded once (thread-safe). Throws Error naming the library or symbol that
// cannot be found.
const CublasApi& cublas();

}  // namespace agpt::cuda
