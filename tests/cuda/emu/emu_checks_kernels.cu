// Small kernels that break the rules a GPU enforces, one rule each, for emu_checks_test.cpp:
// the emulator must report what a GPU would fault on or compute differently. Emulator only
// (rewritten by emulate_cu.py like src/kernels/cuda/*.cu; never built by nvcc).
#include <cuda_runtime.h>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/common.cuh"

namespace agpt::cuda::emu_checks {

namespace {

__global__ void fill_kernel(float* out, float value) {
    out[blockIdx.x * blockDim.x + threadIdx.x] = value;
}

__global__ void dynamic_smem_kernel(float* out) {
    extern __shared__ float smem[];
    smem[threadIdx.x] = static_cast<float>(threadIdx.x);
    __syncthreads();
    out[threadIdx.x] = smem[blockDim.x - 1 - threadIdx.x];
}

__global__ void cp_async16_kernel(float* out, const float* in) {
    __shared__ float tile[8];
    detail::cp_async16(tile, in, true);
    detail::cp_async_commit();
    detail::cp_async_wait<0>();
    out[0] = tile[0];
}

__global__ void pack_copy_kernel(float* out, const float* in) {
    using P = detail::Pack<float, 4>;
    *detail::vec_ptr<P>(out) = *detail::vec_ptr<P>(in);
}

// Each thread writes its slot, then reads its neighbour's (t + shift; its own at the ends), with or
// without the barrier between the write and the read that makes it safe.
__global__ void neighbour_kernel(float* out, int shift, bool barrier) {
    __shared__ float slot[64];
    const int n = static_cast<int>(blockDim.x), t = static_cast<int>(threadIdx.x);
    slot[t] = static_cast<float>(t);
    if (barrier) __syncthreads();
    const int other = t + shift >= 0 && t + shift < n ? t + shift : t;
    out[blockIdx.x * n + t] = slot[other];
}

}  // namespace

void fill(float* out, float value, dim3 grid, dim3 block) {
    fill_kernel<<<grid, block>>>(out, value);
}

void dynamic_smem(float* out, int threads, std::size_t smem, int attribute_bytes) {
    if (attribute_bytes > 0)
        cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             attribute_bytes);
    dynamic_smem_kernel<<<1, threads, smem>>>(out);
}

void cp_async16(float* out, const float* in) {
    cp_async16_kernel<<<1, 1>>>(out, in);
}

void pack_copy(float* out, const float* in) {
    pack_copy_kernel<<<1, 1>>>(out, in);
}

void neighbour(float* out, int blocks, int threads, int shift, bool barrier) {
    neighbour_kernel<<<blocks, threads>>>(out, shift, barrier);
}

}  // namespace agpt::cuda::emu_checks
