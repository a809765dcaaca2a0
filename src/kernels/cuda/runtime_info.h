#pragma once
// What the CUDA runtime sees: versions and visible devices. Plain C++ (no CUDA headers), so
// that tools (agpt doctor) can include it. Never throws for a missing driver or GPU: the reason
// goes into RuntimeInfo::error.
#include <cstddef>
#include <string>
#include <vector>

namespace agpt::cuda {

struct DeviceInfo {
    int index = 0;
    std::string name;
    int cc_major = 0, cc_minor = 0;  // compute capability
    std::size_t memory_bytes = 0;
    int multiprocessors = 0;
};

struct RuntimeInfo {
    int runtime_version = 0;  // 1000·major + 10·minor, e.g. 13000 for 13.0
    int driver_version = 0;   // the newest CUDA the driver supports; 0: no driver
    std::size_t cublaslt_version = 0;
    std::string architectures;  // what the kernels were compiled for, e.g. "90"
    std::vector<DeviceInfo> devices;
    std::string error;  // why no device is visible, when devices is empty
};

RuntimeInfo query_runtime();

// True when at least one device is visible (queried once per process).
bool device_available();

// "13.0" from 13000.
std::string version_string(int cuda_version);

}  // namespace agpt::cuda
