#pragma once
// `agpt doctor`: which backends this build has and what they see. The CPU backend is always
// there (its GEMM library and thread count); the CUDA backend is either compiled in — then the
// runtime and driver versions and every visible device, or the reason none is visible — or not.
#include <string>

namespace agpt {

// The report as printed, a few lines. Never throws for a missing driver or GPU.
std::string doctor_report();

}  // namespace agpt
