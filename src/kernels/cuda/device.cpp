#include "kernels/cuda/device.h"

#include <fmt/format.h>

#include <cstring>
#include <string_view>

#include "core/error.h"

namespace agpt::cuda {

namespace {

// "src/kernels/cuda/gemm.cpp" rather than the build machine's absolute path.
std::string_view short_path(const char* file) {
    std::string_view f(file);
    for (const char* root : {"/src/", "/tests/"}) {
        const auto pos = f.rfind(root);
        if (pos != std::string_view::npos) return f.substr(pos + 1);
    }
    return f;
}

}  // namespace

void fail_call(const char* what, const char* expr, const char* file, int line) {
    throw Error(fmt::format("CUDA error at {}:{}: {}: {}", short_path(file), line, expr, what));
}

void fail_cuda(cudaError_t e, const char* expr, const char* file, int line) {
    fail_call(fmt::format("{} ({})", cudaGetErrorString(e), cudaGetErrorName(e)).c_str(), expr,
              file, line);
}

void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
    fail_call(fmt::format("{} ({})", cublasGetStatusString(s), cublasGetStatusName(s)).c_str(),
              expr, file, line);
}

StreamScratch::StreamScratch(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) AGPT_CUDA_CHECK(cudaMallocAsync(&p_, bytes, stream));
}

StreamScratch::~StreamScratch() {
    if (p_) cudaFreeAsync(p_, stream_);
}

Stream::Stream() {
    AGPT_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
}

Stream::~Stream() {
    if (s_) cudaStreamDestroy(s_);
}

void Stream::synchronize() const {
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s_));
}

Blas::Blas(cudaStream_t stream, std::size_t workspace_bytes)
    : stream_(stream), workspace_(workspace_bytes) {
    AGPT_CUBLAS_CHECK(cublasLtCreate(&lt_));
    AGPT_CUBLAS_CHECK(cublasCreate(&blas_));
    set_stream(stream);
}

Blas::~Blas() {
    if (blas_) cublasDestroy(blas_);
    if (lt_) cublasLtDestroy(lt_);
}

void Blas::set_stream(cudaStream_t stream) {
    stream_ = stream;
    AGPT_CUBLAS_CHECK(cublasSetStream(blas_, stream));
    AGPT_CUBLAS_CHECK(cublasSetWorkspace(blas_, workspace_.data(), workspace_.bytes()));
}

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
    info.cublaslt_version = cublasLtGetVersion();
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
