#pragma once
// NCCL, resolved from libnccl.so.2 on first use (dlopen) instead of linked, as cuBLAS is
// (cublas_loader.h): only a multi-GPU job needs it, and a machine without NCCL still runs every
// single-GPU and CPU command. Call through nccl() with the library's own argument types:
//   AGPT_NCCL_CHECK(nccl().AllReduce(buf, buf, n, ncclFloat, ncclSum, comm, stream));
#include <nccl.h>

#include <string>

namespace agpt::cuda {

// The soname the loader opens (major version of the nccl.h compiled against).
extern const char* const kNcclLibrary;

struct NcclApi {
    decltype(&::ncclGetVersion) GetVersion;
    decltype(&::ncclGetUniqueId) GetUniqueId;
    decltype(&::ncclCommInitRank) CommInitRank;
    decltype(&::ncclCommDestroy) CommDestroy;
    decltype(&::ncclCommAbort) CommAbort;
    decltype(&::ncclCommSplit) CommSplit;
    decltype(&::ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&::ncclGetErrorString) GetErrorString;
    decltype(&::ncclGetLastError) GetLastError;
    decltype(&::ncclAllReduce) AllReduce;
    decltype(&::ncclReduceScatter) ReduceScatter;
    decltype(&::ncclAllGather) AllGather;
    decltype(&::ncclBroadcast) Broadcast;
    decltype(&::ncclSend) Send;
    decltype(&::ncclRecv) Recv;
    decltype(&::ncclGroupStart) GroupStart;
    decltype(&::ncclGroupEnd) GroupEnd;
};

// The entry points from `library`; throws Error naming the library (or the missing symbol) when
// it cannot be loaded. Tests pass a name that does not exist.
NcclApi load_nccl(const std::string& library);

// load_nccl(kNcclLibrary), once (thread-safe); a failure is retried at the next call.
const NcclApi& nccl();

// Whether kNcclLibrary can be opened here (agpt doctor); loads nothing else.
bool nccl_library_found();

// Throws Error "NCCL <what> failed: <ncclGetErrorString>" (and the library's last error text).
[[noreturn]] void fail_nccl(ncclResult_t result, const char* what);

}  // namespace agpt::cuda

#define AGPT_NCCL_CHECK(call)                                                                    \
    do {                                                                                         \
        const ncclResult_t agpt_nccl_result_ = (call);                                           \
        if (agpt_nccl_result_ != ncclSuccess) ::agpt::cuda::fail_nccl(agpt_nccl_result_, #call); \
    } while (0)
