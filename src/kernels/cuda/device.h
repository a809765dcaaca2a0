#pragma once
// The CUDA backend's seam: checked calls, device memory, streams and the cuBLAS(Lt) handles.
//
// Each op in kernels/cuda/*.h computes the same function as its twin in kernels/cpu/*.h, on
// device pointers, with fp32 arithmetic on fp32 or bf16 (__nv_bfloat16) storage, queued on the
// stream it is given (asynchronous: nothing here synchronises unless it says so). Backward ops
// accumulate (+=) into their gradient outputs, as on the CPU. Failures throw agpt::Error with
// the file, the line and CUDA's own message.
//
// Intended usage:
//   if (!agpt::cuda::device_available()) ...;      // runtime_info.h
//   agpt::cuda::DeviceBuffer<float> x(n), y(n);     // cudaMalloc'd, freed by the destructor
//   x.upload(host.data());
//   agpt::cuda::Blas blas;                          // cuBLASLt + workspace, on a stream
//   agpt::cuda::matmul_forward(blas, y.data(), x.data(), w.data(), M, K, N);   // gemm.h
//   y.download(host.data());                        // synchronous copy back
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "kernels/cuda/runtime_info.h"
#include "kernels/cuda/switches.h"

namespace agpt::cuda {

using bf16 = __nv_bfloat16;

// Throws agpt::Error("CUDA error at FILE:LINE: EXPR: WHAT"). Defined in device.cpp.
[[noreturn]] void fail_call(const char* what, const char* expr, const char* file, int line);
[[noreturn]] void fail_cuda(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t s, const char* expr, const char* file, int line);
// For an allocation of `bytes`: out of memory names the size, the device's free and total memory
// and what makes a job smaller; other errors as fail_cuda.
[[noreturn]] void fail_alloc(cudaError_t e, std::size_t bytes, const char* expr, const char* file,
                             int line);

inline void check_cuda(cudaError_t e, const char* expr, const char* file, int line) {
    if (e != cudaSuccess) fail_cuda(e, expr, file, line);
}
inline void check_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) fail_cublas(s, expr, file, line);
}
inline void check_alloc(cudaError_t e, std::size_t bytes, const char* expr, const char* file,
                        int line) {
    if (e != cudaSuccess) fail_alloc(e, bytes, expr, file, line);
}

}  // namespace agpt::cuda

#define AGPT_CUDA_CHECK(expr) ::agpt::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
#define AGPT_CUBLAS_CHECK(expr) ::agpt::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)
#define AGPT_CUDA_CHECK_ALLOC(expr, bytes) \
    ::agpt::cuda::check_alloc((expr), (bytes), #expr, __FILE__, __LINE__)
// After a kernel launch: a bad launch configuration surfaces here (faults inside the kernel
// surface at the next synchronising call).
#define AGPT_CUDA_CHECK_LAUNCH() AGPT_CUDA_CHECK(cudaGetLastError())

namespace agpt::cuda {

// Owns n elements of device memory (cudaMalloc), uninitialised. Move-only.
template <typename T>
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t n) : n_(n) {
        if (n_ > 0)
            AGPT_CUDA_CHECK_ALLOC(cudaMalloc(reinterpret_cast<void**>(&p_), bytes()), bytes());
    }
    ~DeviceBuffer() {
        if (p_) cudaFree(p_);  // no throw from a destructor; a failed free leaks
    }
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    T* data() { return p_; }
    const T* data() const { return p_; }
    std::size_t size() const { return n_; }
    std::size_t bytes() const { return n_ * sizeof(T); }

    // Synchronous copies of all size() elements.
    void upload(const T* host) {
        if (n_ > 0) AGPT_CUDA_CHECK(cudaMemcpy(p_, host, bytes(), cudaMemcpyHostToDevice));
    }
    void download(T* host) const {
        if (n_ > 0) AGPT_CUDA_CHECK(cudaMemcpy(host, p_, bytes(), cudaMemcpyDeviceToHost));
    }
    // Every byte set to `byte`; 0xFF makes every float and bf16 a NaN (the tests' poison).
    void fill_bytes(int byte, cudaStream_t stream = nullptr) {
        if (n_ > 0) AGPT_CUDA_CHECK(cudaMemsetAsync(p_, byte, bytes(), stream));
    }

  private:
    T* p_ = nullptr;
    std::size_t n_ = 0;
};

// Stream-ordered scratch (cudaMallocAsync from the device's default pool), freed on the same
// stream when it goes out of scope: for ops that need temporary memory (RMSNorm's weight-
// gradient partials, the embedding backward's sort).
class StreamScratch {
  public:
    StreamScratch(std::size_t bytes, cudaStream_t stream);
    ~StreamScratch();
    StreamScratch(const StreamScratch&) = delete;
    StreamScratch& operator=(const StreamScratch&) = delete;
    void* data() { return p_; }
    template <typename T>
    T* as(std::size_t byte_offset = 0) {
        return reinterpret_cast<T*>(static_cast<char*>(p_) + byte_offset);
    }

  private:
    void* p_ = nullptr;
    cudaStream_t stream_;
};

// An owned non-blocking stream.
class Stream {
  public:
    Stream();
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return s_; }
    void synchronize() const;

  private:
    cudaStream_t s_ = nullptr;
};

// The cuBLASLt and cuBLAS handles and their workspace, bound to one stream. GEMMs (gemm.h)
// and the fused LM head (cross_entropy.h) run on that stream. Not thread-safe: one per stream.
class Blas {
  public:
    explicit Blas(cudaStream_t stream = nullptr, std::size_t workspace_bytes = 32u << 20);
    ~Blas();
    Blas(const Blas&) = delete;
    Blas& operator=(const Blas&) = delete;

    cudaStream_t stream() const { return stream_; }
    void set_stream(cudaStream_t stream);
    cublasLtHandle_t lt() const { return lt_; }
    cublasHandle_t blas() const { return blas_; }
    void* workspace() { return workspace_.data(); }
    std::size_t workspace_bytes() const { return workspace_.bytes(); }

  private:
    cudaStream_t stream_ = nullptr;
    cublasLtHandle_t lt_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    DeviceBuffer<unsigned char> workspace_;
};

// ceil(a / b) for launch sizes.
constexpr long ceil_div(long a, long b) {
    return (a + b - 1) / b;
}

}  // namespace agpt::cuda
