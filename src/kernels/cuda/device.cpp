#include "kernels/cuda/device.h"
#include "kernels/cuda/cublas_loader.h"

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

void fail_alloc(cudaError_t e, std::size_t bytes, const char* expr, const char* file, int line) {
    if (e != cudaErrorMemoryAllocation) fail_cuda(e, expr, file, line);
    cudaGetLastError();  // not sticky: the caller may free memory and go on
    const double gib = 1024.0 * 1024 * 1024;
    std::string what = fmt::format("out of memory (cudaErrorMemoryAllocation): {:.2f} GiB asked",
                                   static_cast<double>(bytes) / gib);
    std::size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        what += fmt::format(", {:.2f} of {:.2f} GiB free on the device",
                            static_cast<double>(free_b) / gib, static_cast<double>(total_b) / gib);
    else
        cudaGetLastError();
    what +=
        ". `agpt plan` with the job's options shows where a job's device memory goes; a smaller "
        "training.local_batch_size or activation_checkpoint.mode = \"full\" needs less";
    fail_call(what.c_str(), expr, file, line);
}

void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
    fail_call(
        fmt::format("{} ({})", cublas().GetStatusString(s), cublas().GetStatusName(s)).c_str(),
        expr, file, line);
}

StreamScratch::StreamScratch(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) AGPT_CUDA_CHECK_ALLOC(cudaMallocAsync(&p_, bytes, stream), bytes);
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
    AGPT_CUBLAS_CHECK(cublas().LtCreate(&lt_));
    AGPT_CUBLAS_CHECK(cublas().Create(&blas_));
    set_stream(stream);
}

Blas::~Blas() {
    if (blas_) cublas().Destroy(blas_);
    if (lt_) cublas().LtDestroy(lt_);
}

void Blas::set_stream(cudaStream_t stream) {
    stream_ = stream;
    AGPT_CUBLAS_CHECK(cublas().SetStream(blas_, stream));
    AGPT_CUBLAS_CHECK(cublas().SetWorkspace(blas_, workspace_.data(), workspace_.bytes()));
}

}  // namespace agpt::cuda
