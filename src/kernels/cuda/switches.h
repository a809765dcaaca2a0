#pragma once
// The kernel comparison switches, without CUDA headers: device.h and attention_plan.h (which
// `agpt plan` compiles on machines without the toolkit) share them.
#include <cstdlib>
#include <cstring>

namespace agpt::cuda {

// Whether environment variable `name` is set to `value`: the kernel comparison switches
// (AGPT_ATTN_KERNEL=simple, AGPT_ATTN_FORWARD=wide, AGPT_ATTN_BACKWARD=split,
// AGPT_GEMM_EPILOGUE=none), read at each call so that tests and benchmarks can flip them.
inline bool env_is(const char* name, const char* value) {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, value) == 0;
}

}  // namespace agpt::cuda
