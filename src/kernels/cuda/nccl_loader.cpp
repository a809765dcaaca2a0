#include "kernels/cuda/nccl_loader.h"

#include <dlfcn.h>

#include <type_traits>

#include "core/error.h"

#define AGPT_NCCL_NAME2(x) #x
#define AGPT_NCCL_NAME(x) AGPT_NCCL_NAME2(x)

namespace agpt::cuda {

const char* const kNcclLibrary = "libnccl.so." AGPT_NCCL_NAME(NCCL_MAJOR);

NcclApi load_nccl(const std::string& library) {
    void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
        fail(
            "CUDA backend: cannot load {} ({}); multi-GPU training needs NCCL (install "
            "libnccl2, or put the directory holding {} on LD_LIBRARY_PATH)",
            library, dlerror(), library);
    NcclApi api{};
    auto resolve = [&](auto& into, const char* symbol) {
        void* p = dlsym(handle, symbol);
        if (p == nullptr) fail("CUDA backend: {} has no {}", library, symbol);
        into = reinterpret_cast<std::remove_reference_t<decltype(into)>>(p);
    };
#define AGPT_NCCL(field) resolve(api.field, AGPT_NCCL_NAME(nccl##field))
    AGPT_NCCL(GetVersion);
    AGPT_NCCL(GetUniqueId);
    AGPT_NCCL(CommInitRank);
    AGPT_NCCL(CommDestroy);
    AGPT_NCCL(CommAbort);
    AGPT_NCCL(CommSplit);
    AGPT_NCCL(CommGetAsyncError);
    AGPT_NCCL(GetErrorString);
    AGPT_NCCL(GetLastError);
    AGPT_NCCL(AllReduce);
    AGPT_NCCL(ReduceScatter);
    AGPT_NCCL(AllGather);
    AGPT_NCCL(Broadcast);
    AGPT_NCCL(Send);
    AGPT_NCCL(Recv);
    AGPT_NCCL(GroupStart);
    AGPT_NCCL(GroupEnd);
#undef AGPT_NCCL
    return api;
}

const NcclApi& nccl() {
    static const NcclApi api = load_nccl(kNcclLibrary);
    return api;
}

bool nccl_library_found() {
    void* handle = dlopen(kNcclLibrary, RTLD_LAZY | RTLD_LOCAL);
    if (handle == nullptr) return false;
    dlclose(handle);
    return true;
}

void fail_nccl(ncclResult_t result, const char* what) {
    const NcclApi& api = nccl();
    const char* last = api.GetLastError(nullptr);
    fail("NCCL {} failed: {}{}{}", what, api.GetErrorString(result),
         last != nullptr && *last != '\0' ? ": " : "", last != nullptr ? last : "");
}

}  // namespace agpt::cuda
