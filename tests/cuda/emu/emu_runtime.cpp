// The CPU emulation's runtime: fibers for CUDA threads, the barrier scheduler, host memory
// standing in for device memory, and the agpt::cuda seam classes without a driver.
//
// A fiber starts on its own stack with makecontext/swapcontext; after that, fibers and the
// scheduler switch with _setjmp/_longjmp, which (unlike swapcontext) make no sigprocmask system
// call: the emulated kernels switch at every barrier and warp collective, millions of times.
// _FORTIFY_SOURCE's checked longjmp refuses jumps between stacks, hence the #undef.
#undef _FORTIFY_SOURCE
#include <setjmp.h>
#include <ucontext.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "cuda_emu.h"
#include "kernels/cuda/device.h"

namespace emu {

ThreadCtx* current = nullptr;

namespace {

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Exited };

struct Fiber {
    ucontext_t ctx;  // the start, on its own stack
    jmp_buf resume;  // where it waits, once started
    bool started = false;
    ThreadCtx ids;
    State state = State::Ready;
    unsigned gathers = 0;  // warp_gather calls so far: picks the buffer parity
};

constexpr std::size_t kGatherBytes = 64;

struct Block {
    std::vector<Fiber> fibers;
    ucontext_t scheduler;
    jmp_buf scheduler_resume;
    int running = -1;
    float warp_buf[32][32];
    // warp_gather's buffers: [warp][parity][lane][bytes]. Two parities make one barrier per
    // gather enough: a lane writes parity p again only after the next gather's barrier, which
    // every lane reaches after it has read parity p.
    std::vector<unsigned char> gather_buf = std::vector<unsigned char>(32 * 2 * 32 * kGatherBytes);
    const std::function<void()>* body = nullptr;
    std::vector<const void*> poisoned_shared;  // static shared arrays filled in this block
};

Block* block = nullptr;
const char* kernel_name = "";  // the running kernel, for messages
std::vector<float> smem_storage;
constexpr std::size_t kStack = 256 * 1024;
std::vector<std::vector<char>> stacks;

void yield(State s) {
    Fiber& f = block->fibers[block->running];
    f.state = s;
    if (_setjmp(f.resume) == 0) _longjmp(block->scheduler_resume, 1);
}

// Runs fiber f until it waits at a barrier or exits. Its own function (never inlined) so that no
// local of the scheduler's loop lives across the _setjmp.
__attribute__((noinline)) void run_until_switch(Block& b, Fiber& f) {
    if (_setjmp(b.scheduler_resume) == 0) {
        if (f.started) _longjmp(f.resume, 1);
        f.started = true;
        swapcontext(&b.scheduler, &f.ctx);
    }
}

[[noreturn]] void fiber_main() {
    (*block->body)();
    block->fibers[block->running].state = State::Exited;
    _longjmp(block->scheduler_resume, 1);  // never returns (uc_link is not used)
}

}  // namespace

void sync_block() {
    yield(State::AtBlockBarrier);
}

void sync_warp() {
    yield(State::AtWarpBarrier);
}

float shfl_xor(float v, int lane_mask) {
    const int t = static_cast<int>(current->tid.x);
    const int w = t / 32, l = t % 32;
    block->warp_buf[w][l] = v;
    sync_warp();
    const float r = block->warp_buf[w][l ^ lane_mask];
    sync_warp();
    return r;
}

void warp_gather(const void* mine, std::size_t bytes, void* all) {
    if (bytes > kGatherBytes) {
        std::fprintf(stderr, "emu: warp_gather of %zu bytes\n", bytes);
        std::abort();
    }
    Fiber& f = block->fibers[block->running];
    const int t = static_cast<int>(current->tid.x);
    const int w = t / 32, l = t % 32;
    unsigned char* slot = &block->gather_buf[(w * 2 + (f.gathers++ & 1)) * 32 * kGatherBytes];
    std::memcpy(slot + l * kGatherBytes, mine, bytes);
    sync_warp();
    for (int i = 0; i < 32; ++i)
        std::memcpy(static_cast<unsigned char*>(all) + i * bytes, slot + i * kGatherBytes, bytes);
}

// On a GPU a misaligned vector access is a fault (cudaErrorMisalignedAddress).
void check_aligned(const void* p, std::size_t alignment, const char* what) {
    if (reinterpret_cast<std::uintptr_t>(p) % alignment == 0) return;
    std::fprintf(stderr,
                 "emu: kernel %s: %s at %p, not %zu-byte aligned (thread %u of block "
                 "(%u,%u,%u)): a misaligned address on a GPU\n",
                 kernel_name, what, p, alignment, current->tid.x, current->bid.x, current->bid.y,
                 current->bid.z);
    std::abort();
}

void cp_async16(void* dst, const void* src, bool valid) {
    check_aligned(dst, 16, "cp.async 16 destination");
    check_aligned(src, 16, "cp.async 16 source");
    if (valid)
        std::memcpy(dst, src, 16);
    else
        std::memset(dst, 0, 16);
}

void cp_async4(void* dst, const void* src, bool valid) {
    check_aligned(dst, 4, "cp.async 4 destination");
    check_aligned(src, 4, "cp.async 4 source");
    if (valid)
        std::memcpy(dst, src, 4);
    else
        std::memset(dst, 0, 4);
}

namespace {
float bf16_bits_to_float(uint32_t bits16) {
    const uint32_t u = bits16 << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
}  // namespace

void ldmatrix_x4(uint32_t (&r)[4], const void* row, bool trans) {
    check_aligned(row, 16, "ldmatrix row");
    const void* rows[32];
    warp_gather(&row, sizeof row, rows);
    const int lane = static_cast<int>(current->tid.x % 32), g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
        // Element (row, col) of matrix i: row `row` is at lane 8i + row's address.
        auto at = [&](int rr, int cc) {
            uint16_t v;
            std::memcpy(&v, static_cast<const unsigned char*>(rows[8 * i + rr]) + 2 * cc, 2);
            return static_cast<uint32_t>(v);
        };
        r[i] =
            trans ? at(2 * t, g) | at(2 * t + 1, g) << 16 : at(g, 2 * t) | at(g, 2 * t + 1) << 16;
    }
}

void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
    uint32_t all[32][6];
    warp_gather(mine, sizeof mine, all);
    // Lane 4g + t holds A's rows g (a0: cols 2t, 2t+1; a2: cols 2t+8, 2t+9) and g+8 (a1, a3),
    // and B's column g (b0: rows 2t, 2t+1; b1: rows 2t+8, 2t+9).
    auto lo = [](uint32_t v) { return bf16_bits_to_float(v & 0xffffu); };
    auto hi = [](uint32_t v) { return bf16_bits_to_float(v >> 16); };
    const int lane = static_cast<int>(current->tid.x % 32), g = lane / 4, t = lane % 4;
    float arow[2][16], bcol[2][16];
    for (int q = 0; q < 4; ++q) {
        const uint32_t* v = all[4 * g + q];
        for (int r = 0; r < 2; ++r) {
            arow[r][2 * q] = lo(v[r]);
            arow[r][2 * q + 1] = hi(v[r]);
            arow[r][2 * q + 8] = lo(v[r + 2]);
            arow[r][2 * q + 9] = hi(v[r + 2]);
        }
        for (int c = 0; c < 2; ++c) {
            const uint32_t* w = all[4 * (2 * t + c) + q];
            bcol[c][2 * q] = lo(w[4]);
            bcol[c][2 * q + 1] = hi(w[4]);
            bcol[c][2 * q + 8] = lo(w[5]);
            bcol[c][2 * q + 9] = hi(w[5]);
        }
    }
    for (int e = 0; e < 4; ++e) {
        double acc = d[e];
        for (int k = 0; k < 16; ++k)
            acc += static_cast<double>(arow[e / 2][k]) * static_cast<double>(bcol[e % 2][k]);
        d[e] = static_cast<float>(acc);
    }
}

float* dynamic_smem() {
    return smem_storage.data();
}

void poison_shared(void* p, std::size_t bytes) {
    std::vector<const void*>& seen = block->poisoned_shared;
    if (std::find(seen.begin(), seen.end(), p) != seen.end()) return;
    seen.push_back(p);
    std::memset(p, 0xFF, bytes);
}

namespace {

// What cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) allowed,
// per kernel: the largest value set so far.
std::unordered_map<const void*, std::size_t>& max_dynamic_smem() {
    static std::unordered_map<const void*, std::size_t> limits;
    return limits;
}

// Shared memory a block may use without the attribute, and with it on an H100 (dynamic plus
// static; the static part is not seen here, it lives in host statics).
constexpr std::size_t kDefaultSmem = 48 * 1024, kMaxSmem = 227 * 1024;

[[noreturn]] __attribute__((format(printf, 2, 3))) void launch_error(const char* name,
                                                                     const char* problem, ...) {
    std::fprintf(stderr, "emu: launch of kernel %s: ", name);
    va_list args;
    va_start(args, problem);
    std::vfprintf(stderr, problem, args);
    va_end(args);
    std::fputc('\n', stderr);
    std::abort();
}

// The checks the CUDA runtime makes before a launch (cudaErrorInvalidConfiguration,
// cudaErrorInvalidValue on a GPU), and the emulator's own limit to 1-D blocks.
void check_launch(const void* kernel, const char* name, dim3 grid, dim3 bdim, std::size_t smem) {
    if (grid.x < 1 || grid.x > 2147483647u || grid.y < 1 || grid.y > 65535 || grid.z < 1 ||
        grid.z > 65535)
        launch_error(name, "grid (%u,%u,%u) outside x in [1, 2^31-1], y and z in [1, 65535]",
                     grid.x, grid.y, grid.z);
    const unsigned long threads = static_cast<unsigned long>(bdim.x) * bdim.y * bdim.z;
    if (threads < 1 || threads > 1024 || bdim.x > 1024 || bdim.y > 1024 || bdim.z > 64)
        launch_error(name, "block (%u,%u,%u) outside 1..1024 threads", bdim.x, bdim.y, bdim.z);
    if (bdim.y != 1 || bdim.z != 1)
        launch_error(name, "block (%u,%u,%u): the emulator runs 1-D blocks only", bdim.x, bdim.y,
                     bdim.z);
    if (smem > kDefaultSmem) {
        const auto it = max_dynamic_smem().find(kernel);
        const std::size_t allowed = it == max_dynamic_smem().end() ? 0 : it->second;
        if (smem > kMaxSmem)
            launch_error(name,
                         "%zu bytes of dynamic shared memory, above the %zu bytes of a block on "
                         "an H100",
                         smem, kMaxSmem);
        if (smem > allowed)
            launch_error(
                name,
                "%zu bytes of dynamic shared memory, above %zu without "
                "cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
                ">= bytes) (set: %zu)",
                smem, kDefaultSmem, allowed);
    }
}

}  // namespace

void set_max_dynamic_smem(const void* kernel, int bytes) {
    if (bytes < 0 || static_cast<std::size_t>(bytes) > kMaxSmem) {
        std::fprintf(stderr,
                     "emu: cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize, %d) "
                     "outside 0..%zu bytes (an H100's shared memory per block)\n",
                     bytes, kMaxSmem);
        std::abort();
    }
    std::size_t& limit = max_dynamic_smem()[kernel];
    limit = std::max(limit, static_cast<std::size_t>(bytes));
}

void run_grid(const void* kernel, const char* name, dim3 grid, dim3 bdim, std::size_t smem,
              const std::function<void()>& body) {
    check_launch(kernel, name, grid, bdim, smem);
    const int n = static_cast<int>(bdim.x);
    kernel_name = name;
    smem_storage.resize(smem / sizeof(float) + 1);
    if (stacks.size() < static_cast<std::size_t>(n)) stacks.resize(n, std::vector<char>(kStack));
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                // Garbage (0xFF: NaN, -1) at each block's start, not the previous block's values.
                std::memset(smem_storage.data(), 0xFF, smem_storage.size() * sizeof(float));
                Block b;
                b.body = &body;
                b.fibers.resize(n);
                block = &b;
                for (int t = 0; t < n; ++t) {
                    Fiber& f = b.fibers[t];
                    f.ids = {{static_cast<unsigned>(t), 0, 0}, {bx, by, bz}, bdim, grid};
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = stacks[t].data();
                    f.ctx.uc_stack.ss_size = kStack;
                    f.ctx.uc_link = &b.scheduler;
                    makecontext(&f.ctx, fiber_main, 0);
                }
                const int warps = (n + 31) / 32;
                // Fibers run in thread order in even rounds of even blocks and odd rounds of
                // odd blocks, in reverse order otherwise: a read of another thread's write that
                // lacks a barrier between them sees the stale value in some block.
                const unsigned long linear_block =
                    bx + grid.x * (by + static_cast<unsigned long>(grid.y) * bz);
                for (unsigned long round = linear_block;; ++round) {
                    bool ran = false;
                    const bool reverse = round % 2 == 1;
                    for (int i = 0; i < n; ++i) {
                        const int t = reverse ? n - 1 - i : i;
                        Fiber& f = b.fibers[t];
                        if (f.state != State::Ready) continue;
                        b.running = t;
                        current = &f.ids;
                        f.state = State::Exited;  // fiber_main's end leaves it so
                        run_until_switch(b, f);
                        ran = true;
                    }
                    // Release barriers that every live thread has reached.
                    bool live = false, all_at_block = true;
                    for (const Fiber& f : b.fibers)
                        if (f.state != State::Exited) {
                            live = true;
                            if (f.state != State::AtBlockBarrier) all_at_block = false;
                        }
                    if (!live) break;
                    bool released = false;
                    for (int w = 0; w < warps; ++w) {
                        bool any = false, all = true;
                        for (int t = w * 32; t < std::min(n, w * 32 + 32); ++t) {
                            const State s = b.fibers[t].state;
                            if (s == State::Exited) continue;
                            any = true;
                            if (s != State::AtWarpBarrier) all = false;
                        }
                        if (any && all) {
                            for (int t = w * 32; t < std::min(n, w * 32 + 32); ++t)
                                if (b.fibers[t].state == State::AtWarpBarrier)
                                    b.fibers[t].state = State::Ready;
                            released = true;
                        }
                    }
                    if (all_at_block) {
                        for (Fiber& f : b.fibers)
                            if (f.state == State::AtBlockBarrier) f.state = State::Ready;
                        released = true;
                    }
                    if (!released && !ran) {
                        std::fprintf(stderr,
                                     "emu: kernel %s: deadlock in block (%u,%u,%u): threads "
                                     "wait at different barriers\n",
                                     name, bx, by, bz);
                        std::abort();
                    }
                }
                block = nullptr;
                current = nullptr;
            }
    kernel_name = "";
}

}  // namespace emu

// Runtime API stand-ins (host memory for device memory; everything synchronous).
extern "C" {
// Device memory as cudaMalloc gives it: 256-byte aligned, and garbage, here every byte 0xFF (NaN
// as fp32 and bf16, -1 as an integer), so that reading memory never written shows.
cudaError_t cudaMalloc(void** p, size_t bytes) {
    constexpr size_t kAlign = 256;
    const size_t rounded = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
    *p = std::aligned_alloc(kAlign, rounded);
    if (!*p) return cudaErrorMemoryAllocation;
    std::memset(*p, 0xFF, rounded);
    return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) {
    return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t) {
    return cudaFree(p);
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind, cudaStream_t) {
    for (size_t r = 0; r < height; r++)
        std::memcpy(static_cast<char*>(dst) + r * dpitch,
                    static_cast<const char*>(src) + r * spitch, width);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
    std::memset(p, value, bytes);
    return cudaSuccess;
}
// No device memory to report: host allocations stand in for it.
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    *free_bytes = *total_bytes = 0;
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* kernel, enum cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
        emu::set_max_dynamic_smem(kernel, value);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
    return cudaSuccess;
}
// One device; streams and events are tokens: everything above ran when it was queued. (The
// data-parallel path creates them: dist/nccl_communicator.cpp.)
cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
cudaError_t cudaDeviceGetStreamPriorityRange(int* least, int* greatest) {
    *least = *greatest = 0;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned int, int) {
    static int token;
    *stream = reinterpret_cast<cudaStream_t>(&token);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) {
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
    static int token;
    *event = reinterpret_cast<cudaEvent_t>(&token);
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t) {
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) {
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t) {
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) {
    return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t) {
    return "emulated error";
}
const char* cudaGetErrorName(cudaError_t) {
    return "cudaErrorEmulated";
}
}

namespace agpt::cuda {

void fail_call(const char* what, const char* expr, const char* file, int line) {
    throw Error(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " + expr +
                ": " + what);
}
void fail_cuda(cudaError_t, const char* expr, const char* file, int line) {
    fail_call("emulated error", expr, file, line);
}
void fail_cublas(cublasStatus_t, const char* expr, const char* file, int line) {
    fail_call("emulated cuBLAS error", expr, file, line);
}
void fail_alloc(cudaError_t, std::size_t, const char* expr, const char* file, int line) {
    fail_call("emulated allocation failure", expr, file, line);
}

StreamScratch::StreamScratch(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) AGPT_CUDA_CHECK(cudaMallocAsync(&p_, bytes, stream));
}
StreamScratch::~StreamScratch() {
    if (p_) cudaFreeAsync(p_, stream_);
}

Blas::Blas(cudaStream_t stream, std::size_t) : stream_(stream) {}
Blas::~Blas() = default;
void Blas::set_stream(cudaStream_t stream) {
    stream_ = stream;
}

RuntimeInfo query_runtime() {
    RuntimeInfo info;
    info.architectures = "emulated";
    info.devices.push_back({0, "CPU emulation of the CUDA kernels", 0, 0, 0, 1});
    return info;
}

bool device_available() {
    return true;
}

std::string version_string(int v) {
    return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace agpt::cuda
