#include <cstdint>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/attention_tc.h"
#include "kernels/cuda/common.cuh"

// Flash attention on tensor cores (FlashAttention-2 work partitioning) for bf16 storage and head
// sizes 64, 128 and 192 (MLA's padded heads): bf16 mma.sync.m16n8k16 with fp32 accumulation,
// operands from shared memory by ldmatrix, tiles brought in by cp.async one step ahead (double
// buffering), the online softmax in registers (log2 domain: exp2 of pre-scaled scores), causal tile
// skipping.
//
// Shared tiles are rows of D bf16 in 16-byte chunks, chunk c of row r stored at chunk c ^ (r % 8)
// (an XOR swizzle: the 8 rows an ldmatrix reads fall in 8 different bank groups). Rows past T
// are zero-filled and masked.
//
// Forward, CTA = (64-query tile, head, batch), 4 warps of 16 query rows each (wide: 128-query
// tiles, 2 × 16 rows per warp): S = Q·Kᵀ per 64-key tile into registers, mask on the diagonal
// tiles, online softmax per row (quad shuffles), P (bf16, straight from the accumulator layout
// into the A layout) · V.
//
// Backward (D_i = dO_i·O_i first, into a scratch buffer):
//   dK/dV kernel, CTA = (64-key tiles x and n−1−x, kv head, batch), each warp owning 16 keys:
//     for each query head of the group and each 32-query tile from the diagonal on (Q, dO,
//     lse and D brought in by cp.async), Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, Pᵀ = exp(s − lse),
//     dSᵀ = Pᵀ ⊙ (dPᵀ − D) · scale (· cap′), dV += Pᵀ·dO, dK += dSᵀ·Q in registers;
//   dQ kernel, CTA = (64-query tile, head, batch), each warp owning 16 queries: for each
//     32-key tile up to the diagonal, S and dP again, dQ += dS·K.
// Every output element has one owner that writes it once: no atomics, deterministic.
// The split backward (AGPT_ATTN_BACKWARD=split, hd 64) does without the dQ kernel's two
// recomputed products: the dK/dV kernel also takes dQ += dS·K (dS through shared memory) into
// fp32 partial sums, one per split of each head's key tiles, and a last kernel adds the splits.
namespace agpt::cuda::detail {

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Element offset of 16-byte chunk c of row r in a swizzled tile of D bf16 per row.
template <int D>
__device__ __forceinline__ int swz(int r, int c) {
    return r * D + ((c ^ (r & 7)) << 3);
}

// Starts copying rows [0, n) of a ROWS × D tile (row stride `stride` elements) into dst;
// rows >= n are zero-filled.
template <int ROWS, int D>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, long stride, int n) {
    constexpr int CH = D / 8;
    static_assert((ROWS * CH) % kThreads == 0, "tile not a multiple of the block");
#pragma unroll
    for (int i = 0; i < ROWS * CH / kThreads; ++i) {
        const int idx = static_cast<int>(threadIdx.x) + i * kThreads;
        const int r = idx / CH, c = idx % CH;
        const bool ok = r < n;
        cp_async16(dst + swz<D>(r, c), src + (ok ? r : 0) * stride + c * 8, ok);
    }
}

// A fragment (16×16) at rows r0.., columns 16·ks.. of a tile.
template <int D>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* tile, int r0, int ks) {
    const int lane = threadIdx.x & 31;
    ldmatrix_x4(a, tile + swz<D>(r0 + (lane & 15), 2 * ks + (lane >> 4)));
}
// B fragments (k 16·ks.., n-tiles n0.. and n0+8..) of a tile stored [n][k]: b[0..1] for the
// first n-tile, b[2..3] for the second.
template <int D>
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const bf16* tile, int n0, int ks) {
    const int lane = threadIdx.x & 31;
    ldmatrix_x4(b, tile + swz<D>(n0 + (lane & 7) + ((lane >> 4) << 3), 2 * ks + ((lane >> 3) & 1)));
}
// B fragments (k rows k0..k0+15, n-tiles of columns 8·nc.. and 8·nc+8..) of a tile stored
// [k][n].
template <int D>
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const bf16* tile, int k0, int nc) {
    const int lane = threadIdx.x & 31;
    ldmatrix_x4_trans(b,
                      tile + swz<D>(k0 + (lane & 7) + (((lane >> 3) & 1) << 3), nc + (lane >> 4)));
}

// Accumulator n-tiles 2kk and 2kk+1 (16 rows × 16 columns) as an A fragment over k = columns.
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&lo)[4],
                                         const float (&hi)[4]) {
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

// The score the softmax sees: s·scale, capped when CAP. dfac = its derivative w.r.t. s.
template <bool CAP>
__device__ __forceinline__ float softmax_score(float s, float scale, float cap, float& dfac) {
    float x = s * scale;
    dfac = scale;
    if (CAP) {
        x = cap * tanhf(x / cap);
        const float t = x / cap;
        dfac = (1.0f - t * t) * scale;
    }
    return x;
}

__device__ __forceinline__ void store_pair(bf16* p, float a, float b) {
    __nv_bfloat162 v;
    v.x = __float2bfloat16(a);
    v.y = __float2bfloat16(b);
    *vec_ptr<__nv_bfloat162>(p) = v;
}

__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
    return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(kFullMask, v, 1);
    return v + __shfl_xor_sync(kFullMask, v, 2);
}

// Forward tiles: 64 keys, and 64·MT queries, MT 16-row m-tiles per warp (MT = 2: each K and V
// fragment read from shared memory feeds two m-tiles).
template <int D, int MT>
struct FwdTiles {
    static constexpr int BQ = 64 * MT, BK = 64;
    static constexpr std::size_t smem = sizeof(bf16) * (BQ + 4 * BK) * D;
};

// Blocks per SM the forward kernel is compiled for (1: no register cap; see the tuning notes).
template <int MT>
constexpr int kFwdBlocks = MT == 1 ? 1 : 2;

template <int D, bool CAP, int MT>
__global__ void __launch_bounds__(kThreads, kFwdBlocks<MT>)
    attention_forward_tc_kernel(bf16* out, float* lse, const bf16* qkv, int T_len, int H, int KV,
                                float scale, float cap) {
    constexpr int BQ = FwdTiles<D, MT>::BQ, BK = FwdTiles<D, MT>::BK, KS = D / 16, NT = D / 8;
    extern __shared__ float4 smem_tc[];
    bf16* Qs = reinterpret_cast<bf16*>(smem_tc);
    bf16* Ks = Qs + BQ * D;      // two buffers
    bf16* Vs = Ks + 2 * BK * D;  // two buffers

    const int qt = gridDim.x - 1 - blockIdx.x;  // the longest rows of tiles first
    const int h = blockIdx.y, b = blockIdx.z;
    const int g = h / (H / KV);
    const long row = static_cast<long>(H + 2 * KV) * D;
    const bf16* base = qkv + static_cast<long>(b) * T_len * row;
    const bf16* kbase = base + static_cast<long>(H + g) * D;
    const bf16* vbase = base + static_cast<long>(H + KV + g) * D;
    const int q0 = qt * BQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane >> 2, tq = lane & 3;
    // This lane's query rows in m-tile i: r_lo[i] and r_lo[i] + 8.
    int r_lo[MT];
#pragma unroll
    for (int i = 0; i < MT; ++i) r_lo[i] = q0 + 64 * i + warp * 16 + gq;
    // Key tiles up to the block's last query row; from tile MT·qt on, some keys are masked.
    const int nkt = MT == 1 ? qt + 1 : min(MT * (qt + 1), (T_len + BK - 1) / BK);

    load_tile<BQ, D>(Qs, base + q0 * row + static_cast<long>(h) * D, row, min(BQ, T_len - q0));
    load_tile<BK, D>(Ks, kbase, row, min(BK, T_len));
    load_tile<BK, D>(Vs, vbase, row, min(BK, T_len));
    cp_async_commit();

    uint32_t qf[MT][KS][4];
    float o[MT][NT][4];
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
        for (int j = 0; j < NT; ++j) o[i][j][0] = o[i][j][1] = o[i][j][2] = o[i][j][3] = 0.0f;
        m[i][0] = m[i][1] = -INFINITY;
        l[i][0] = l[i][1] = 0.0f;
    }

    for (int kt = 0; kt < nkt; ++kt) {
        if (kt + 1 < nkt) {  // prefetch the next K/V tile into the other buffer
            const int k1 = (kt + 1) * BK, n1 = min(BK, T_len - k1);
            const int buf = (kt + 1) & 1;
            load_tile<BK, D>(Ks + buf * BK * D, kbase + k1 * row, row, n1);
            load_tile<BK, D>(Vs + buf * BK * D, vbase + k1 * row, row, n1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int i = 0; i < MT; ++i)
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) load_a<D>(qf[i][ks], Qs, 64 * i + warp * 16, ks);
        }
        const bf16* Kt = Ks + (kt & 1) * BK * D;
        const bf16* Vt = Vs + (kt & 1) * BK * D;

        float s[MT][BK / 8][4];
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < BK / 8; ++j)
                s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
#pragma unroll
            for (int jp = 0; jp < BK / 16; ++jp) {
                uint32_t bb[4];
                load_b_nk<D>(bb, Kt, jp * 16, ks);
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    mma_bf16(s[i][2 * jp], qf[i][ks], bb[0], bb[1]);
                    mma_bf16(s[i][2 * jp + 1], qf[i][ks], bb[2], bb[3]);
                }
            }

        // Online softmax; scores in log2 units. Key 0 is visible to every row, so the running
        // max is finite from the first tile on.
        const int k0 = kt * BK;
        const bool diag = kt >= MT * qt;
#pragma unroll
        for (int i = 0; i < MT; ++i) {
            float mx[2] = {m[i][0], m[i][1]};
#pragma unroll
            for (int j = 0; j < BK / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    float dfac;
                    float x = softmax_score<CAP>(s[i][j][e], scale, cap, dfac) * kLog2e;
                    if (diag && k0 + 8 * j + 2 * tq + (e & 1) > r_lo[i] + 8 * (e >> 1))
                        x = -INFINITY;
                    s[i][j][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                mx[r] = quad_max(mx[r]);
                alpha[r] = exp2f(m[i][r] - mx[r]);
                m[i][r] = mx[r];
                l[i][r] *= alpha[r];
            }
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                o[i][j][0] *= alpha[0];
                o[i][j][1] *= alpha[0];
                o[i][j][2] *= alpha[1];
                o[i][j][3] *= alpha[1];
            }
#pragma unroll
            for (int j = 0; j < BK / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const float p = exp2f(s[i][j][e] - m[i][e >> 1]);
                    l[i][e >> 1] += p;
                    s[i][j][e] = p;
                }
        }

        // O += P·V.
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int i = 0; i < MT; ++i) acc_to_a(pa[i], s[i][2 * kk], s[i][2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t bb[4];
                load_b_kn<D>(bb, Vt, kk * 16, 2 * np);
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    mma_bf16(o[i][2 * np], pa[i], bb[0], bb[1]);
                    mma_bf16(o[i][2 * np + 1], pa[i], bb[2], bb[3]);
                }
            }
        }
        __syncthreads();  // this K/V buffer is refilled by the next iteration's prefetch
    }

    const long out_row = static_cast<long>(H) * D;
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            l[i][r] = quad_sum(l[i][r]);
            const int qi = r_lo[i] + 8 * r;
            if (qi >= T_len) continue;
            bf16* o_row =
                out + (static_cast<long>(b) * T_len + qi) * out_row + static_cast<long>(h) * D;
            const float inv = 1.0f / l[i][r];
#pragma unroll
            for (int j = 0; j < NT; ++j)
                store_pair(o_row + 8 * j + 2 * tq, o[i][j][2 * r] * inv, o[i][j][2 * r + 1] * inv);
            if (tq == 0)
                lse[(static_cast<long>(b) * H + h) * T_len + qi] =
                    (m[i][r] + log2f(l[i][r])) * kLn2;
        }
}

// Threads per row of the row dots: the largest power of two dividing D/8 (8 at hd 64 and 192,
// 16 at 128), so that a row's threads are a shuffle group.
template <int D>
constexpr int kRowDotThreads = (D / 8) & -(D / 8);

// Dq[(b·H + h)·T + t] = Σ_d dout·out over head h's row t: kRowDotThreads per row, 8·CPT
// elements each, a fixed shuffle tree.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_row_dot_kernel(float* Dq, const bf16* dout, const bf16* out, long rows, int T_len,
                             int H) {
    constexpr int TPR = kRowDotThreads<D>;
    constexpr int CPT = D / 8 / TPR;  // 16-byte chunks per thread
    const long w = static_cast<long>(blockIdx.x) * (kThreads / TPR) + threadIdx.x / TPR;
    const int c = threadIdx.x % TPR;
    float acc = 0.0f;
    if (w < rows) {  // row (b·T + t)·H + h of (B, T, H·D)
        const auto* d2 = vec_ptr<__nv_bfloat162>(dout + w * D + c * 8 * CPT);
        const auto* o2 = vec_ptr<__nv_bfloat162>(out + w * D + c * 8 * CPT);
        __nv_bfloat162 dv[4 * CPT], ov[4 * CPT];
#pragma unroll
        for (int k = 0; k < 4 * CPT; ++k) {
            dv[k] = d2[k];
            ov[k] = o2[k];
        }
#pragma unroll
        for (int k = 0; k < 4 * CPT; ++k)
            acc += __bfloat162float(dv[k].x) * __bfloat162float(ov[k].x) +
                   __bfloat162float(dv[k].y) * __bfloat162float(ov[k].y);
    }
#pragma unroll
    for (int o = TPR / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(kFullMask, acc, o);
    if (w < rows && c == 0) {
        const long bt = w / H;
        const int h = static_cast<int>(w % H);
        const long b = bt / T_len, t = bt % T_len;
        Dq[(b * H + h) * T_len + t] = acc;
    }
}

// Tuning, measured on an H200 at B=8, H=12, T=1024, hd=64 (backward 0.33 ms; the dK/dV kernel
// 0.18 ms, dQ 0.145 ms, the row dots 0.007 ms). The backward kernels are compiled for 3 blocks
// per SM at hd 64 (≤ 168 registers, no spills; 2 blocks: 0.38 ms) and 2 at hd 128 (3 spill).
// Query tile of the dK/dV kernel and key tile of the dQ kernel: 32 (64 at hd 64: 0.42 ms, and
// 64 does not fit the registers at hd 128). Pairing key tiles x and nt−1−x in one dK/dV block:
// 0.33 ms, 0.36 ms without. The forward keeps its registers (ptxas, sm_90: 163 at hd 64; 3
// blocks of 40 KB; capping it at 128 registers for 4 blocks spills and is slower). Not yet timed:
// the wide forward (AGPT_ATTN_FORWARD=wide, hd 64: 128-query tiles, each warp two m-tiles, so
// each K/V fragment from shared memory feeds two MMAs; 248 registers, 2 blocks of 48 KB) and the
// split backward (168 registers, 28–48 bytes of spills).
// hd 192 (not yet timed on a device): the dK and dV accumulators alone take 192 registers per
// thread, so the backward runs 16-row query (dK/dV) and key (dQ) tiles and is compiled for 1
// block per SM; ptxas (sm_90) gives every kernel 255 registers, with small spills (dK/dV 40–96
// bytes, dQ 4, the uncapped forward 12). Shared memory per block: forward 120 KiB, dK/dV
// 72.3 KiB, dQ 72 KiB.
template <int D>
constexpr int kBwdBlocks = D <= 64    ? 3
                           : D <= 128 ? 2
                                      : 1;
template <int D>
constexpr int kDkvQueryTile = D <= 128 ? 32 : 16;
template <int D>
constexpr int kDqKeyTile = D <= 128 ? 32 : 16;
constexpr bool kDkvPaired = true;

template <int D, int BQ, bool DQ = false>
struct DkvTiles {
    static constexpr int BK = 64;  // 4 warps × 16 keys
    static constexpr std::size_t smem =
        sizeof(bf16) * (2 * BK + 4 * BQ + (DQ ? BQ : 0)) * D + sizeof(float) * 4 * BQ;
};

// dK and dV of key tile kt (kv head blockIdx.y, batch blockIdx.z). With DQ (hd 64), also this key
// tile's part of dQ = dS·K, added into dq_part (fp32, [B][H][T][D]), or stored there when
// `first` (the block's first key tile: the lowest, whose query rows cover every later one's).
template <int D, int BQ, bool CAP, bool DQ = false>
__device__ __forceinline__ void dkv_tile(int kt, bf16* dqkv, const bf16* dout, const bf16* qkv,
                                         const float* lse, const float* Dq, int T_len, int H,
                                         int KV, float scale, float cap, float* dq_part = nullptr,
                                         bool first = false) {
    static_assert(!DQ || D == 64, "the dQ partial sums are laid out for hd 64");
    constexpr int BK = DkvTiles<D, BQ>::BK, KS = D / 16, NT = D / 8, NQ = BQ / 8;
    extern __shared__ float4 smem_tc[];
    bf16* Ks = reinterpret_cast<bf16*>(smem_tc);
    bf16* Vs = Ks + BK * D;
    bf16* Qs = Vs + BK * D;                                  // two buffers
    bf16* dOs = Qs + 2 * BQ * D;                             // two buffers
    float* Ls = reinterpret_cast<float*>(dOs + 2 * BQ * D);  // two buffers of lse and D
    float* Ds = Ls + 2 * BQ;
    bf16* dSs = reinterpret_cast<bf16*>(Ds + 2 * BQ);  // DQ: dS, [query][key], swizzled

    const int g = blockIdx.y, b = blockIdx.z;
    const int group = H / KV;
    const long row = static_cast<long>(H + 2 * KV) * D;
    const long out_row = static_cast<long>(H) * D;
    const long bT = static_cast<long>(b) * T_len;
    const bf16* base = qkv + bT * row;
    const int k0 = kt * BK;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane >> 2, tq = lane & 3;
    const int kr = k0 + warp * 16 + gq;  // this lane's keys: kr and kr + 8

    load_tile<BK, D>(Ks, base + k0 * row + static_cast<long>(H + g) * D, row, min(BK, T_len - k0));
    load_tile<BK, D>(Vs, base + k0 * row + static_cast<long>(H + KV + g) * D, row,
                     min(BK, T_len - k0));
    // Iterations: (query head of the group, query tile from the one holding key k0 on).
    const int qt0 = k0 / BQ;
    const int per_head = (T_len + BQ - 1) / BQ - qt0;
    const int iters = group * per_head;
    auto issue = [&](int it) {
        const int h = g * group + it / per_head, q0 = (qt0 + it % per_head) * BQ;
        const int nq = min(BQ, T_len - q0), buf = it & 1;
        load_tile<BQ, D>(Qs + buf * BQ * D, base + q0 * row + static_cast<long>(h) * D, row, nq);
        load_tile<BQ, D>(dOs + buf * BQ * D, dout + (bT + q0) * out_row + static_cast<long>(h) * D,
                         out_row, nq);
        const long stats = (static_cast<long>(b) * H + h) * T_len + q0;
        const int i = threadIdx.x % BQ;
        if (threadIdx.x < BQ)
            cp_async4(Ls + buf * BQ + i, lse + stats + min(i, nq - 1), i < nq);
        else if (threadIdx.x < 2 * BQ)
            cp_async4(Ds + buf * BQ + i, Dq + stats + min(i, nq - 1), i < nq);
    };
    issue(0);
    cp_async_commit();

    float dk[NT][4], dv[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[j][e] = dv[j][e] = 0.0f;

    for (int it = 0; it < iters; ++it) {
        if (it + 1 < iters) {
            issue(it + 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int q0 = (qt0 + it % per_head) * BQ;
        const bf16* Qt = Qs + (it & 1) * BQ * D;
        const bf16* dOt = dOs + (it & 1) * BQ * D;
        const float* Lt = Ls + (it & 1) * BQ;
        const float* Dt = Ds + (it & 1) * BQ;

        // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ: this warp's 16 keys × BQ queries.
        float s[NQ][4], dp[NQ][4];
#pragma unroll
        for (int j = 0; j < NQ; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            uint32_t ka[4], va[4];
            load_a<D>(ka, Ks, warp * 16, ks);
            load_a<D>(va, Vs, warp * 16, ks);
#pragma unroll
            for (int jp = 0; jp < BQ / 16; ++jp) {
                uint32_t bb[4];
                load_b_nk<D>(bb, Qt, jp * 16, ks);
                mma_bf16(s[2 * jp], ka, bb[0], bb[1]);
                mma_bf16(s[2 * jp + 1], ka, bb[2], bb[3]);
                load_b_nk<D>(bb, dOt, jp * 16, ks);
                mma_bf16(dp[2 * jp], va, bb[0], bb[1]);
                mma_bf16(dp[2 * jp + 1], va, bb[2], bb[3]);
            }
        }
        // Pᵀ into s, dSᵀ into dp; element (key kr + 8·(e/2), query q0 + 8j + 2tq + e%2).
#pragma unroll
        for (int j = 0; j < NQ; ++j)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const int i = 8 * j + 2 * tq + c, qi = q0 + i;
                const bool qok = qi < T_len;
                const float L = Lt[i] * kLog2e, Dv = Dt[i];
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int e = 2 * r + c;
                    float p = 0.0f, ds = 0.0f;
                    if (qok && kr + 8 * r <= qi) {
                        float dfac;
                        const float x = softmax_score<CAP>(s[j][e], scale, cap, dfac);
                        p = exp2f(x * kLog2e - L);
                        ds = p * (dp[j][e] - Dv) * dfac;
                    }
                    s[j][e] = p;
                    dp[j][e] = ds;
                }
            }
        if constexpr (DQ) {
            // dS as bf16 (the value the dK product takes) at [query][key] for dQ = dS·K.
#pragma unroll
            for (int j = 0; j < NQ; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int key = warp * 16 + gq + 8 * (e >> 1), q = 8 * j + 2 * tq + (e & 1);
                    dSs[swz<BK>(q, key >> 3) + (key & 7)] = __float2bfloat16(dp[j][e]);
                }
        }
        // DQ: this warp's 16 queries × 32 columns of dQ, the partial sum so far, loaded halfway
        // through the dV and dK products (half of P and dS no longer held) so that the load's
        // latency is spent on the other half.
        constexpr int NW = DQ ? D / 16 : 1;  // n-tiles per warp
        const int r0 = 16 * (warp & 1), c0 = NW * (warp >> 1);
        const int h = g * group + it / per_head;
        float acc[NW][4];
        auto load_partial = [&] {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int qi = q0 + r0 + gq + 8 * r;
                const float* prow =
                    dq_part + ((static_cast<long>(b) * H + h) * T_len + min(qi, T_len - 1)) * D;
#pragma unroll
                for (int j = 0; j < NW; ++j) {
                    float2 v = make_float2(0.0f, 0.0f);
                    if (!first && qi < T_len)
                        v = *vec_ptr<const float2>(prow + 8 * (c0 + j) + 2 * tq);
                    acc[j][2 * r] = v.x;
                    acc[j][2 * r + 1] = v.y;
                }
            }
        };
        // dV += Pᵀ·dO, dK += dSᵀ·Q.
#pragma unroll
        for (int kk = 0; kk < BQ / 16; ++kk) {
            uint32_t pa[4], da[4];
            acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
            acc_to_a(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t bb[4];
                load_b_kn<D>(bb, dOt, kk * 16, 2 * np);
                mma_bf16(dv[2 * np], pa, bb[0], bb[1]);
                mma_bf16(dv[2 * np + 1], pa, bb[2], bb[3]);
                load_b_kn<D>(bb, Qt, kk * 16, 2 * np);
                mma_bf16(dk[2 * np], da, bb[0], bb[1]);
                mma_bf16(dk[2 * np + 1], da, bb[2], bb[3]);
            }
            if (DQ && kk == BQ / 32 - 1) load_partial();
        }
        if constexpr (DQ) {
            __syncthreads();  // every warp's dS is in place
            // acc += dS·K (k = the tile's 64 keys) and back into the block's partial sum: one
            // owner per element, program order, no atomics.
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk) {
                uint32_t a[4];
                load_a<BK>(a, dSs, r0, kk);
#pragma unroll
                for (int np = 0; np < NW / 2; ++np) {
                    uint32_t bb[4];
                    load_b_kn<D>(bb, Ks, kk * 16, c0 + 2 * np);
                    mma_bf16(acc[2 * np], a, bb[0], bb[1]);
                    mma_bf16(acc[2 * np + 1], a, bb[2], bb[3]);
                }
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int qi = q0 + r0 + gq + 8 * r;
                if (qi >= T_len) continue;
                float* prow = dq_part + ((static_cast<long>(b) * H + h) * T_len + qi) * D;
#pragma unroll
                for (int j = 0; j < NW; ++j)
                    *vec_ptr<float2>(prow + 8 * (c0 + j) + 2 * tq) =
                        make_float2(acc[j][2 * r], acc[j][2 * r + 1]);
            }
        }
        __syncthreads();  // this Q/dO buffer (and dS) is refilled by the next iteration
    }

    bf16* dbase = dqkv + bT * row;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int kj = kr + 8 * r;
        if (kj >= T_len) continue;
        bf16* dk_row = dbase + kj * row + static_cast<long>(H + g) * D;
        bf16* dv_row = dbase + kj * row + static_cast<long>(H + KV + g) * D;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            store_pair(dk_row + 8 * j + 2 * tq, dk[j][2 * r], dk[j][2 * r + 1]);
            store_pair(dv_row + 8 * j + 2 * tq, dv[j][2 * r], dv[j][2 * r + 1]);
        }
    }
}

// Block x takes key tiles x and nt−1−x when kDkvPaired (the same work for every block under
// the causal mask: no tail of short blocks), else tile x alone.
template <int D, int BQ, bool CAP>
__global__ void __launch_bounds__(kThreads, kBwdBlocks<D>)
    attention_backward_dkv_tc_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                     const float* lse, const float* Dq, int T_len, int H, int KV,
                                     float scale, float cap) {
    constexpr int BK = DkvTiles<D, BQ>::BK;
    const int kt = blockIdx.x, nt = (T_len + BK - 1) / BK;
    dkv_tile<D, BQ, CAP>(kt, dqkv, dout, qkv, lse, Dq, T_len, H, KV, scale, cap);
    if (kDkvPaired && nt - 1 - kt != kt) {
        __syncthreads();  // the first tile's K and V are no longer read
        dkv_tile<D, BQ, CAP>(nt - 1 - kt, dqkv, dout, qkv, lse, Dq, T_len, H, KV, scale, cap);
    }
}

// The split backward (AGPT_ATTN_BACKWARD=split, hd 64): dK, dV and dQ's partial sums in one
// kernel, 5 matrix products where the kernels above take 7. Block (split s of S, kv head, batch)
// takes the key-tile pairs x ≡ s (mod S), its tiles in ascending order, and owns split s's
// partial sum of dQ; the sum kernel below adds the S partials in split order: deterministic.
template <int D, int BQ, bool CAP>
__global__ void __launch_bounds__(kThreads, kBwdBlocks<D>)
    attention_backward_split_tc_kernel(bf16* dqkv, float* dq_part, const bf16* dout,
                                       const bf16* qkv, const float* lse, const float* Dq,
                                       int T_len, int H, int KV, float scale, float cap) {
    constexpr int BK = DkvTiles<D, BQ, true>::BK;
    const int S = gridDim.x, s = blockIdx.x;
    const int nt = (T_len + BK - 1) / BK, pairs = (nt + 1) / 2;
    float* part = dq_part + static_cast<long>(s) * gridDim.z * H * T_len * D;
    for (int x = s; x < pairs; x += S) {
        if (x != s) __syncthreads();  // the previous tile's K and V are no longer read
        dkv_tile<D, BQ, CAP, true>(x, dqkv, dout, qkv, lse, Dq, T_len, H, KV, scale, cap, part,
                                   x == s);
    }
    for (int x = s + (pairs - 1 - s) / S * S; x >= s; x -= S) {
        if (nt - 1 - x == x) continue;
        __syncthreads();
        dkv_tile<D, BQ, CAP, true>(nt - 1 - x, dqkv, dout, qkv, lse, Dq, T_len, H, KV, scale, cap,
                                   part, false);
    }
}

// dQ = Σ_s partial s, in split order, row t of split s only where s·BK ≤ t (split s's lowest
// key tile is s: its rows start there; split 0 has every row), into the q columns of dqkv.
template <int D>
__global__ void attention_dq_sum_kernel(bf16* dqkv, const float* dq_part, int splits, int BK,
                                        long rows, int T_len, int H, int KV) {
    constexpr int C = D / 4;  // float4s per row
    const long i = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * C) return;
    const long w = i / C;  // row (b, h, t) of the partials
    const int c = static_cast<int>(i % C) * 4;
    const int t = static_cast<int>(w % T_len);
    const long bh = w / T_len;
    const int h = static_cast<int>(bh % H);
    const long b = bh / H;
    float4 acc = *vec_ptr<const float4>(dq_part + w * D + c);
    for (int s = 1; s < splits && s * BK <= t; ++s) {
        const float4 v = *vec_ptr<const float4>(dq_part + s * rows * D + w * D + c);
        acc.x += v.x;
        acc.y += v.y;
        acc.z += v.z;
        acc.w += v.w;
    }
    bf16* dst = dqkv + ((b * T_len + t) * (H + 2 * KV) + h) * D + c;
    store_pair(dst, acc.x, acc.y);
    store_pair(dst + 2, acc.z, acc.w);
}

template <int D, int BK>
struct DqTiles {
    static constexpr int BQ = 64;  // 4 warps × 16 queries
    static constexpr std::size_t smem = sizeof(bf16) * (2 * BQ + 4 * BK) * D;
};

template <int D, int BK, bool CAP>
__global__ void __launch_bounds__(kThreads, kBwdBlocks<D>)
    attention_backward_dq_tc_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse,
                                    const float* Dq, int T_len, int H, int KV, float scale,
                                    float cap) {
    constexpr int BQ = DqTiles<D, BK>::BQ, KS = D / 16, NT = D / 8, NK = BK / 8;
    extern __shared__ float4 smem_tc[];
    bf16* Qs = reinterpret_cast<bf16*>(smem_tc);
    bf16* dOs = Qs + BQ * D;
    bf16* Ks = dOs + BQ * D;     // two buffers
    bf16* Vs = Ks + 2 * BK * D;  // two buffers

    const int qt = gridDim.x - 1 - blockIdx.x;  // the longest rows of tiles first
    const int h = blockIdx.y, b = blockIdx.z;
    const int g = h / (H / KV);
    const long row = static_cast<long>(H + 2 * KV) * D;
    const long out_row = static_cast<long>(H) * D;
    const long bT = static_cast<long>(b) * T_len;
    const long qcol = static_cast<long>(h) * D;
    const bf16* base = qkv + bT * row;
    const bf16* kbase = base + static_cast<long>(H + g) * D;
    const bf16* vbase = base + static_cast<long>(H + KV + g) * D;
    const int q0 = qt * BQ;
    const int nq = min(BQ, T_len - q0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane >> 2, tq = lane & 3;
    const int qr = q0 + warp * 16 + gq;  // this lane's queries: qr and qr + 8

    load_tile<BQ, D>(Qs, base + q0 * row + qcol, row, nq);
    load_tile<BQ, D>(dOs, dout + (bT + q0) * out_row + qcol, out_row, nq);
    load_tile<BK, D>(Ks, kbase, row, min(BK, T_len));
    load_tile<BK, D>(Vs, vbase, row, min(BK, T_len));
    cp_async_commit();

    float L[2], Dv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int qi = qr + 8 * r;
        const long i = (static_cast<long>(b) * H + h) * T_len + qi;
        L[r] = qi < T_len ? lse[i] * kLog2e : 0.0f;
        Dv[r] = qi < T_len ? Dq[i] : 0.0f;
    }
    uint32_t qf[KS][4], df[KS][4];
    float dq[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.0f;

    const int nkt = (q0 + nq - 1) / BK + 1;  // key tiles up to the tile's last query
    for (int kt = 0; kt < nkt; ++kt) {
        if (kt + 1 < nkt) {
            const int k1 = (kt + 1) * BK, n1 = min(BK, T_len - k1);
            const int buf = (kt + 1) & 1;
            load_tile<BK, D>(Ks + buf * BK * D, kbase + k1 * row, row, n1);
            load_tile<BK, D>(Vs + buf * BK * D, vbase + k1 * row, row, n1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int ks = 0; ks < KS; ++ks) {
                load_a<D>(qf[ks], Qs, warp * 16, ks);
                load_a<D>(df[ks], dOs, warp * 16, ks);
            }
        }
        const bf16* Kt = Ks + (kt & 1) * BK * D;
        const bf16* Vt = Vs + (kt & 1) * BK * D;

        float s[NK][4], dp[NK][4];
#pragma unroll
        for (int j = 0; j < NK; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
#pragma unroll
            for (int jp = 0; jp < BK / 16; ++jp) {
                uint32_t bb[4];
                load_b_nk<D>(bb, Kt, jp * 16, ks);
                mma_bf16(s[2 * jp], qf[ks], bb[0], bb[1]);
                mma_bf16(s[2 * jp + 1], qf[ks], bb[2], bb[3]);
                load_b_nk<D>(bb, Vt, jp * 16, ks);
                mma_bf16(dp[2 * jp], df[ks], bb[0], bb[1]);
                mma_bf16(dp[2 * jp + 1], df[ks], bb[2], bb[3]);
            }
        // dS into dp; element (query qr + 8·(e/2), key k0 + 8j + 2tq + e%2).
        const int k0 = kt * BK;
#pragma unroll
        for (int j = 0; j < NK; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int qi = qr + 8 * (e >> 1), kj = k0 + 8 * j + 2 * tq + (e & 1);
                float ds = 0.0f;
                if (qi < T_len && kj <= qi) {
                    float dfac;
                    const float x = softmax_score<CAP>(s[j][e], scale, cap, dfac);
                    const float p = exp2f(x * kLog2e - L[e >> 1]);
                    ds = p * (dp[j][e] - Dv[e >> 1]) * dfac;
                }
                dp[j][e] = ds;
            }
            // dQ += dS·K.
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            uint32_t da[4];
            acc_to_a(da, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t bb[4];
                load_b_kn<D>(bb, Kt, kk * 16, 2 * np);
                mma_bf16(dq[2 * np], da, bb[0], bb[1]);
                mma_bf16(dq[2 * np + 1], da, bb[2], bb[3]);
            }
        }
        __syncthreads();  // this K/V buffer is refilled by the next iteration's prefetch
    }

    bf16* dbase = dqkv + bT * row;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int qi = qr + 8 * r;
        if (qi >= T_len) continue;
        bf16* dq_row = dbase + qi * row + qcol;
#pragma unroll
        for (int j = 0; j < NT; ++j)
            store_pair(dq_row + 8 * j + 2 * tq, dq[j][2 * r], dq[j][2 * r + 1]);
    }
}

template <int D, bool CAP, int MT>
void forward_tiles(bf16* out, float* lse, const bf16* qkv, int B, int T_len, int H, int KV,
                   float cap, cudaStream_t stream) {
    constexpr std::size_t smem = FwdTiles<D, MT>::smem;
    auto kernel = attention_forward_tc_kernel<D, CAP, MT>;
    AGPT_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const dim3 grid(ceil_div(T_len, FwdTiles<D, MT>::BQ), H, B);
    const float scale = 1.0f / sqrtf(static_cast<float>(D));
    kernel<<<grid, kThreads, smem, stream>>>(out, lse, qkv, T_len, H, KV, scale, cap);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <int D, bool CAP>
void forward_d(AttentionKernels kernels, bf16* out, float* lse, const bf16* qkv, int B, int T_len,
               int H, int KV, float cap, cudaStream_t stream) {
    if constexpr (D == 64) {
        if (kernels == AttentionKernels::wide) {
            forward_tiles<D, CAP, 2>(out, lse, qkv, B, T_len, H, KV, cap, stream);
            return;
        }
    }
    forward_tiles<D, CAP, 1>(out, lse, qkv, B, T_len, H, KV, cap, stream);
}

template <int D, bool CAP>
void backward_d(const AttentionBackwardPlan& plan, bf16* dqkv, const bf16* dout, const bf16* qkv,
                const bf16* out, const float* lse, int B, int T_len, int H, int KV, float cap,
                cudaStream_t stream) {
    constexpr int BQ = kDkvQueryTile<D>, BK = kDqKeyTile<D>;
    const float scale = 1.0f / sqrtf(static_cast<float>(D));
    const long rows = static_cast<long>(B) * T_len * H;
    StreamScratch dbuf(plan.row_dot_bytes, stream);
    float* Dq = dbuf.as<float>();
    attention_row_dot_kernel<D>
        <<<ceil_div(rows, kThreads / kRowDotThreads<D>), kThreads, 0, stream>>>(Dq, dout, out, rows,
                                                                                T_len, H);
    AGPT_CUDA_CHECK_LAUNCH();

    if constexpr (D == 64) {  // see the split kernel
        if (plan.kernels == AttentionKernels::split) {
            constexpr std::size_t smem = DkvTiles<D, BQ, true>::smem;
            constexpr int BK = DkvTiles<D, BQ, true>::BK;
            auto kernel = attention_backward_split_tc_kernel<D, BQ, CAP>;
            AGPT_CUDA_CHECK(
                cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
            static_assert(BK == kAttentionKeyTile);
            const int splits = plan.dq_splits;
            StreamScratch part(plan.dq_partial_bytes, stream);
            kernel<<<dim3(splits, KV, B), kThreads, smem, stream>>>(
                dqkv, part.as<float>(), dout, qkv, lse, Dq, T_len, H, KV, scale, cap);
            AGPT_CUDA_CHECK_LAUNCH();
            attention_dq_sum_kernel<D><<<ceil_div(rows * (D / 4), 256), 256, 0, stream>>>(
                dqkv, part.as<float>(), splits, BK, rows, T_len, H, KV);
            AGPT_CUDA_CHECK_LAUNCH();
            return;
        }
    }
    constexpr std::size_t dkv_smem = DkvTiles<D, BQ>::smem;
    auto dkv = attention_backward_dkv_tc_kernel<D, BQ, CAP>;
    AGPT_CUDA_CHECK(
        cudaFuncSetAttribute(dkv, cudaFuncAttributeMaxDynamicSharedMemorySize, dkv_smem));
    const long nt = ceil_div(T_len, DkvTiles<D, BQ>::BK);
    dkv<<<dim3(kDkvPaired ? (nt + 1) / 2 : nt, KV, B), kThreads, dkv_smem, stream>>>(
        dqkv, dout, qkv, lse, Dq, T_len, H, KV, scale, cap);
    AGPT_CUDA_CHECK_LAUNCH();

    constexpr std::size_t dq_smem = DqTiles<D, BK>::smem;
    auto dq = attention_backward_dq_tc_kernel<D, BK, CAP>;
    AGPT_CUDA_CHECK(cudaFuncSetAttribute(dq, cudaFuncAttributeMaxDynamicSharedMemorySize, dq_smem));
    dq<<<dim3(ceil_div(T_len, DqTiles<D, BK>::BQ), H, B), kThreads, dq_smem, stream>>>(
        dqkv, dout, qkv, lse, Dq, T_len, H, KV, scale, cap);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_forward_tc(bf16* out, float* lse, const bf16* qkv, int B, int T_len, int H, int KV,
                          int hd, float softcap, cudaStream_t stream) {
    const AttentionKernels k = attention_forward_kernels(hd, true);
    if (k == AttentionKernels::plain || !aligned16(qkv) || !aligned16(out)) return false;
    const bool cap = softcap > 0.0f;
    if (hd == 64)
        cap ? forward_d<64, true>(k, out, lse, qkv, B, T_len, H, KV, softcap, stream)
            : forward_d<64, false>(k, out, lse, qkv, B, T_len, H, KV, softcap, stream);
    else if (hd == 128)
        cap ? forward_d<128, true>(k, out, lse, qkv, B, T_len, H, KV, softcap, stream)
            : forward_d<128, false>(k, out, lse, qkv, B, T_len, H, KV, softcap, stream);
    else
        cap ? forward_d<192, true>(k, out, lse, qkv, B, T_len, H, KV, softcap, stream)
            : forward_d<192, false>(k, out, lse, qkv, B, T_len, H, KV, softcap, stream);
    return true;
}

bool attention_backward_tc(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out,
                           const float* lse, int B, int T_len, int H, int KV, int hd, float softcap,
                           cudaStream_t stream) {
    const AttentionBackwardPlan p = attention_backward_plan(B, T_len, H, KV, hd, true);
    if (p.kernels == AttentionKernels::plain || !aligned16(qkv) || !aligned16(dout) ||
        !aligned16(out) || !aligned16(dqkv))
        return false;
    const bool cap = softcap > 0.0f;
    if (hd == 64)
        cap ? backward_d<64, true>(p, dqkv, dout, qkv, out, lse, B, T_len, H, KV, softcap, stream)
            : backward_d<64, false>(p, dqkv, dout, qkv, out, lse, B, T_len, H, KV, softcap, stream);
    else if (hd == 128)
        cap ? backward_d<128, true>(p, dqkv, dout, qkv, out, lse, B, T_len, H, KV, softcap, stream)
            : backward_d<128, false>(p, dqkv, dout, qkv, out, lse, B, T_len, H, KV, softcap,
                                     stream);
    else
        cap ? backward_d<192, true>(p, dqkv, dout, qkv, out, lse, B, T_len, H, KV, softcap, stream)
            : backward_d<192, false>(p, dqkv, dout, qkv, out, lse, B, T_len, H, KV, softcap,
                                     stream);
    return true;
}

}  // namespace agpt::cuda::detail
