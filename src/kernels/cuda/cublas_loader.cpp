#include "kernels/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <string>

#include "core/error.h"

// Spelled after macro expansion: cublasCreate is cublasCreate_v2 in cublas_v2.h.
#define AGPT_CUBLAS_NAME2(x) #x
#define AGPT_CUBLAS_NAME(x) AGPT_CUBLAS_NAME2(x)

namespace agpt::cuda {

namespace {

void* open_library(const std::string& name) {
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
        fail("CUDA backend: cannot load {} ({}); the CUDA toolkit's cuBLAS must be installed", name,
             dlerror());
    return handle;
}

template <class F>
void resolve(F& into, void* library, const std::string& library_name, const char* symbol) {
    void* p = dlsym(library, symbol);
    if (p == nullptr) fail("CUDA backend: {} has no {}", library_name, symbol);
    into = reinterpret_cast<F>(p);
}

}  // namespace

const CublasApi& cublas() {
    static const CublasApi api = [] {
        const std::string lt_name = "libcublasLt.so." AGPT_CUBLAS_NAME(CUBLAS_VER_MAJOR);
        const std::string blas_name = "libcublas.so." AGPT_CUBLAS_NAME(CUBLAS_VER_MAJOR);
        void* lt = open_library(lt_name);
        void* blas = open_library(blas_name);
        CublasApi a{};
#define AGPT_LT(field, fn) resolve(a.field, lt, lt_name, AGPT_CUBLAS_NAME(fn))
#define AGPT_BLAS(field, fn) resolve(a.field, blas, blas_name, AGPT_CUBLAS_NAME(fn))
        AGPT_LT(LtCreate, cublasLtCreate);
        AGPT_LT(LtDestroy, cublasLtDestroy);
        AGPT_LT(LtMatmul, cublasLtMatmul);
        AGPT_LT(LtMatmulAlgoGetHeuristic, cublasLtMatmulAlgoGetHeuristic);
        AGPT_LT(LtMatmulDescCreate, cublasLtMatmulDescCreate);
        AGPT_LT(LtMatmulDescDestroy, cublasLtMatmulDescDestroy);
        AGPT_LT(LtMatmulDescSetAttribute, cublasLtMatmulDescSetAttribute);
        AGPT_LT(LtMatmulPreferenceCreate, cublasLtMatmulPreferenceCreate);
        AGPT_LT(LtMatmulPreferenceDestroy, cublasLtMatmulPreferenceDestroy);
        AGPT_LT(LtMatmulPreferenceSetAttribute, cublasLtMatmulPreferenceSetAttribute);
        AGPT_LT(LtMatrixLayoutCreate, cublasLtMatrixLayoutCreate);
        AGPT_LT(LtMatrixLayoutDestroy, cublasLtMatrixLayoutDestroy);
        AGPT_BLAS(Create, cublasCreate);
        AGPT_BLAS(Destroy, cublasDestroy);
        AGPT_BLAS(SetStream, cublasSetStream);
        AGPT_BLAS(SetWorkspace, cublasSetWorkspace);
        AGPT_BLAS(GemmEx, cublasGemmEx);
        AGPT_BLAS(GetStatusName, cublasGetStatusName);
        AGPT_BLAS(GetStatusString, cublasGetStatusString);
#undef AGPT_LT
#undef AGPT_BLAS
        return a;
    }();
    return api;
}

}  // namespace agpt::cuda
