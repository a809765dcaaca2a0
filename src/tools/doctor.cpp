#include "tools/doctor.h"

#include <cblas.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <fstream>
#include <thread>

#include "dist/launcher.h"

#if defined(AGPT_GEMM_ONEDNN) && __has_include(<dnnl.h>)
#include <dnnl.h>
#define AGPT_DOCTOR_DNNL 1
#endif
#if AGPT_HAVE_CUDA
#include "kernels/cuda/nccl_loader.h"
#include "kernels/cuda/runtime_info.h"
#include "kernels/cuda/switches.h"
#endif

namespace agpt {

namespace {

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos)
                return line.substr(line.find_first_not_of(' ', colon + 1));
        }
    return "unknown CPU";
}

std::string cpu_section() {
    std::string s = fmt::format("cpu: compiled in; {}, {} hardware threads\n", cpu_model(),
                                std::thread::hardware_concurrency());
    const char* config = openblas_get_config();
    const char* core = openblas_get_corename();
    const int parallel = openblas_get_parallel();  // 0 sequential, 1 pthreads, 2 OpenMP
    s += fmt::format("  GEMM: {} (kernel {}, {} threads{})\n", config ? config : "OpenBLAS",
                     core ? core : "?", openblas_get_num_threads(),
                     parallel == 2   ? ", OpenMP build"
                     : parallel == 1 ? ", pthreads build"
                                     : "");
#ifdef AGPT_DOCTOR_DNNL
    const dnnl_version_t* v = dnnl_version();
    s += fmt::format("  GEMM: oneDNN {}.{}.{} selected (-DAGPT_GEMM=onednn)\n", v->major, v->minor,
                     v->patch);
#elif defined(AGPT_GEMM_ONEDNN)
    s += "  GEMM: oneDNN selected (-DAGPT_GEMM=onednn)\n";
#endif
    s += fmt::format("  OpenMP: {} threads (OMP_NUM_THREADS or training.threads change it)\n",
                     omp_get_max_threads());
    return s;
}

#if AGPT_HAVE_CUDA
// Whether multi-GPU training can load NCCL here, and its version where a device is visible (the
// library is only opened for that: its initialisation is not free).
std::string nccl_line(bool device_visible) {
    const std::string lib = cuda::kNcclLibrary;
    if (!cuda::nccl_library_found())
        return fmt::format("  NCCL: {} not found (multi-GPU training needs it)\n", lib);
    int v = 0;
    if (!device_visible || cuda::nccl().GetVersion(&v) != ncclSuccess)
        return fmt::format("  NCCL: {} found\n", lib);
    // NCCL_VERSION(X, Y, Z) = X·10000 + Y·100 + Z since 2.9.
    return fmt::format("  NCCL: {} found, version {}.{}.{}\n", lib, v / 10000, v / 100 % 100,
                       v % 100);
}
#endif

std::string cuda_section() {
#if AGPT_HAVE_CUDA
    const cuda::RuntimeInfo info = cuda::query_runtime();
    const std::size_t lt = info.cublaslt_version;  // e.g. 130100 for 13.1.0
    const std::string details = fmt::format(
        "kernels for sm_{}, CUDA runtime {}, cuBLASLt {}.{}.{}, driver {}", info.architectures,
        cuda::version_string(info.runtime_version), lt / 10000, lt / 100 % 100, lt % 100,
        info.driver_version ? "for CUDA " + cuda::version_string(info.driver_version)
                            : std::string("not found"));
    if (info.devices.empty())
        return fmt::format("cuda: compiled in, no device visible ({})\n  {}\n", info.error,
                           details) +
               nccl_line(false);
    std::string s = fmt::format("cuda: compiled in; {}\n", details) + nccl_line(true);
    const auto switches = cuda::active_switches();
    s += switches.empty() ? "  kernel switches: none (every kernel at its default)\n"
                          : fmt::format("  kernel switches: {}\n", fmt::join(switches, " "));
    for (const cuda::DeviceInfo& d : info.devices) {
        s += fmt::format("  device {}: {}, compute capability {}.{}, {:.1f} GiB, {} SMs\n", d.index,
                         d.name, d.cc_major, d.cc_minor,
                         static_cast<double>(d.memory_bytes) / (1024.0 * 1024.0 * 1024.0),
                         d.multiprocessors);
        // Kernels carry sm_XX code plus compute_XX PTX: older devices cannot run them.
        const int cc = d.cc_major * 10 + d.cc_minor;
        int lowest = 1000;
        for (std::size_t pos = 0; pos < info.architectures.size();) {
            const auto end = info.architectures.find(';', pos);
            const std::string a = info.architectures.substr(pos, end - pos);
            try {
                lowest = std::min(lowest, std::stoi(a));
            } catch (const std::exception&) {
            }
            pos = end == std::string::npos ? info.architectures.size() : end + 1;
        }
        if (cc < lowest)
            s += fmt::format(
                "    warning: the kernels need compute capability {}.{} or newer; rebuild with "
                "-DCMAKE_CUDA_ARCHITECTURES={}\n",
                lowest / 10, lowest % 10, cc);
    }
    return s;
#else
    return "cuda: not compiled in (no CUDA toolkit at build time, or -DAGPT_CUDA=OFF)\n";
#endif
}

}  // namespace

std::string doctor_report() {
    return cpu_section() + cuda_section() +
           distributed_report(current_environment(), hardware_cores());
}

}  // namespace agpt
