#pragma once
// Device-side helpers shared by the kernels: fp32 <-> storage conversions and warp/block
// reductions. Reductions here use fixed trees (xor shuffles, then warp order), so a result
// never depends on timing.
#include <cuda_bf16.h>

#include <cstdint>

namespace agpt::cuda::detail {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float to_float(float x) {
    return x;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
    return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
    return __float2bfloat16(x);  // round to nearest even
}

// VEC consecutive elements, loaded and stored as one access (16 bytes for kVec<T>).
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
};

template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

inline bool aligned16(const void* p) {
    return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

// p seen as a V (a Pack, __nv_bfloat162, ...) for one vector access: on a GPU an address not
// aligned to alignof(V) faults, so the emulation checks it; with nvcc this is the plain cast.
template <typename V, typename T>
__device__ __forceinline__ V* vec_ptr(T* p) {
#ifdef AGPT_CUDA_EMU
    ::emu::check_aligned(p, alignof(V), "vector access");
#endif
    return reinterpret_cast<V*>(p);
}
template <typename V, typename T>
__device__ __forceinline__ const V* vec_ptr(const T* p) {
#ifdef AGPT_CUDA_EMU
    ::emu::check_aligned(p, alignof(V), "vector access");
#endif
    return reinterpret_cast<const V*>(p);
}

// p[i] += x, in the storage type (fp32 arithmetic, one rounding to T).
template <typename T>
__device__ __forceinline__ void add_to(T* p, float x) {
    *p = from_float<T>(to_float(*p) + x);
}

// Every lane gets the sum (max) of all 32 lanes' values.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
    return v;
}

// Sum (max) over the block; every thread gets the result. blockDim.x must be a multiple of 32
// (at most 1024); scratch holds 32 floats. Ends with a barrier, so scratch can be reused.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();
    return t;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : -INFINITY;
    t = warp_max(t);
    __syncthreads();
    return t;
}

}  // namespace agpt::cuda::detail
