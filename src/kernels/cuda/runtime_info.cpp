#include "kernels/cuda/runtime_info.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <fmt/format.h>

#include <utility>

// Only the CUDA runtime (linked statically, small) is used here. cuBLAS is asked for its version
// through dlopen, so that a program which links this file but no GEMM (agpt on a CPU) does not
// load the cuBLAS libraries, whose relocation alone adds ~200 MB to every process's RSS.
namespace agpt::cuda {

namespace {

std::size_t cublaslt_version() {
    void* lib = dlopen("libcublasLt.so.13", RTLD_LAZY | RTLD_LOCAL);
    if (lib == nullptr) return 0;
    std::size_t v = 0;
    if (auto* get = reinterpret_cast<std::size_t (*)()>(dlsym(lib, "cublasLtGetVersion")))
        v = get();
    dlclose(lib);
    return v;
}

}  // namespace

std::string version_string(int v) {
    return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
}

RuntimeInfo query_runtime() {
    RuntimeInfo info;
#ifdef AGPT_CUDA_ARCHITECTURES
    info.architectures = AGPT_CUDA_ARCHITECTURES;
#endif
    cudaRuntimeGetVersion(&info.runtime_version);
    cudaDriverGetVersion(&info.driver_version);  // leaves 0 when no driver is installed
    info.cublaslt_version = cublaslt_version();
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess && info.driver_version == 0) {
        info.error = "no NVIDIA driver: libcuda.so.1 not found";
        cudaGetLastError();
        return info;
    }
    if (e != cudaSuccess) {
        info.error = fmt::format("{}: {}", cudaGetErrorName(e), cudaGetErrorString(e));
        cudaGetLastError();  // clear it: the caller may go on without a device
        return info;
    }
    if (n == 0) {
        info.error = "the driver reports no devices";
        return info;
    }
    for (int i = 0; i < n; ++i) {
        cudaDeviceProp p{};
        const cudaError_t pe = cudaGetDeviceProperties(&p, i);
        if (pe != cudaSuccess) {
            info.error = fmt::format("device {}: {}", i, cudaGetErrorString(pe));
            continue;
        }
        DeviceInfo d;
        d.index = i;
        d.name = p.name;
        d.cc_major = p.major;
        d.cc_minor = p.minor;
        d.memory_bytes = p.totalGlobalMem;
        d.multiprocessors = p.multiProcessorCount;
        info.devices.push_back(std::move(d));
    }
    return info;
}

bool device_available() {
    static const bool available = !query_runtime().devices.empty();
    return available;
}

}  // namespace agpt::cuda
