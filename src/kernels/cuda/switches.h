#pragma once
// The kernel comparison switches, without CUDA headers: device.h and attention_plan.h (which
// `agpt plan` compiles on machines without the toolkit) share them.
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace agpt::cuda {

// Whether environment variable `name` is set to `value`: the kernel comparison switches
// (AGPT_ATTN_KERNEL=simple, AGPT_ATTN_FORWARD=wide, AGPT_ATTN_BACKWARD=split,
// AGPT_GEMM_EPILOGUE=none), read at each call so that tests and benchmarks can flip them.
inline bool env_is(const char* name, const char* value) {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, value) == 0;
}

// The switches set in this process, "NAME=VALUE" each (empty: every kernel at its default), for
// the logs and results of runs whose numbers they change.
inline std::vector<std::string> active_switches() {
    std::vector<std::string> set;
    for (const char* name :
         {"AGPT_ATTN_KERNEL", "AGPT_ATTN_FORWARD", "AGPT_ATTN_BACKWARD", "AGPT_GEMM_EPILOGUE"}) {
        const char* v = std::getenv(name);
        if (v && *v) set.push_back(std::string(name) + "=" + v);
    }
    return set;
}

}  // namespace agpt::cuda
