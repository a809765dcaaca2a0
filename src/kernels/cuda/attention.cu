#include <cmath>
#include <type_traits>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_tc.h"
#include "kernels/cuda/common.cuh"

// bf16 with head size 64, 128 or 192 runs on tensor cores (attention_tc.cu). Everything else
// (fp32, other head sizes up to 192, and every call when AGPT_ATTN_KERNEL=simple) runs the plain
// FlashAttention-2 here, on CUDA cores (fp32 FMAs from shared memory). Tiles are 32 queries × 32
// keys, so a key tile is one key per lane; a block has 4 warps and each warp owns 8 query rows (or
// 8 keys).
//
// Shared memory holds fp32 copies of the tiles, rows padded to D+1 floats (D = head size
// rounded up to 32·NR, NR = 1, 2, 4 or 6) so that lane j reading row j, column d hits bank
// (j + d) mod 32. Per block at NR 4 / 6: forward 52.5 / 76.5 KiB, backward 73 / 105 KiB (above
// the 48 KiB default: every launch opts in with cudaFuncSetAttribute; the H100's limit is 227
// KiB), so 2 blocks per SM at NR 6. Registers (ptxas, sm_90, no spills at NR 6): forward 128,
// dK/dV kernel 168 (its dK and dV accumulators are 2·kRows·NR = 96 floats per thread), dQ 128.
//
// Forward, block = (query tile, head, batch): for each key tile up to the diagonal, scores
// (lane = key) → online softmax per row (warp max; each lane keeps a partial row sum) → P to
// shared memory → O += P·V with lane = output column. lse = m + log(l) per query.
//
// Backward: D_i = dO_i·O_i, P = exp(s − lse), dS = P ⊙ (dP − D) · scale (· cap′), and
//   dK/dV kernel, block = (key tile, kv head, batch): loops over the group's query heads and
//     the query tiles from the diagonal on; dV += Pᵀ·dO, dK += dSᵀ·Q in registers;
//   dQ kernel, block = (query tile, head, batch): loops over key tiles up to the diagonal;
//     dQ += dS·K.
// Each output element has one owner that writes it once: no atomics, deterministic.
namespace agpt::cuda {

namespace {

using namespace detail;

constexpr int kTile = 32;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kTile / kWarps;         // query rows (or keys) per warp
constexpr int kPS = kTile + 1;                // row stride of the P and dS tiles
constexpr int kMaxHead = 192;                 // NR = 6
constexpr std::size_t kMaxSmem = 227 * 1024;  // per block, opted in (H100, H200)

template <int NR>
struct Dims {
    static constexpr int D = 32 * NR;  // padded head size
    static constexpr int S = D + 1;    // shared-memory row stride
    static constexpr std::size_t forward_smem = sizeof(float) * (3 * kTile * S + kTile * kPS);
    static constexpr std::size_t backward_smem =
        sizeof(float) * (4 * kTile * S + 2 * kTile * kPS + 2 * kTile);
    static_assert(forward_smem <= kMaxSmem && backward_smem <= kMaxSmem);
};

// dst[i·S + d] = src[i·stride + d] as fp32 for i < n rows, d < hd; zero elsewhere.
template <typename T, int NR>
__device__ __forceinline__ void load_tile(float* dst, const T* src, long stride, int n, int hd) {
    constexpr int D = Dims<NR>::D, S = Dims<NR>::S;
    for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
        const int i = idx / D, d = idx % D;
        dst[i * S + d] = (i < n && d < hd) ? to_float(src[i * stride + d]) : 0.0f;
    }
}

// The score the softmax sees: s·scale, capped when CAP (a template argument: an uncapped model
// pays nothing for the cap). *dfac = its derivative w.r.t. s.
template <bool CAP>
__device__ __forceinline__ float softmax_score(float s, float scale, float cap, float* dfac) {
    float x = s * scale;
    *dfac = scale;
    if constexpr (CAP) {
        x = cap * tanhf(x / cap);
        const float t = x / cap;
        *dfac = (1.0f - t * t) * scale;
    }
    return x;
}

// lse_s[i] and D_s[i] = Σ_d dO[i,d]·O[i,d] for the query tile's rows (0 past the end); each
// warp takes its own rows.
template <typename T>
__device__ __forceinline__ void load_row_stats(float* lse_s, float* D_s, const float* lse_row,
                                               const T* dout, const T* out, long out_row, int q0,
                                               int T_len, int hd) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int r = 0; r < kRows; ++r) {
        const int i = warp * kRows + r, qi = q0 + i;
        float acc = 0.0f;
        if (qi < T_len)
            for (int d = lane; d < hd; d += 32)
                acc += to_float(dout[qi * out_row + d]) * to_float(out[qi * out_row + d]);
        acc = warp_sum(acc);
        if (lane == 0) {
            D_s[i] = acc;
            lse_s[i] = qi < T_len ? lse_row[qi] : 0.0f;
        }
    }
}

// P and dS for one (query tile, key tile) pair: thread (warp, lane) takes key j = lane and
// rows i = warp·kRows + r. Invisible pairs (key after query, or query past the end) give 0.
// Ps may be null (the dQ kernel needs only dS).
template <int NR, bool CAP>
__device__ __forceinline__ void probs_and_dscores(float* Ps, float* dSs, const float* Qs,
                                                  const float* dOs, const float* Ks,
                                                  const float* Vs, const float* lse_s,
                                                  const float* D_s, int q0, int k0, int T_len,
                                                  float scale, float cap) {
    constexpr int D = Dims<NR>::D, S = Dims<NR>::S;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float s[kRows], dp[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) s[r] = dp[r] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
        const float kd = Ks[lane * S + d], vd = Vs[lane * S + d];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int i = warp * kRows + r;
            s[r] += Qs[i * S + d] * kd;
            dp[r] += dOs[i * S + d] * vd;
        }
    }
    const int kj = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int i = warp * kRows + r, qi = q0 + i;
        float p = 0.0f, ds = 0.0f;
        if (kj <= qi && qi < T_len) {
            float dfac;
            const float x = softmax_score<CAP>(s[r], scale, cap, &dfac);
            p = expf(x - lse_s[i]);
            ds = p * (dp[r] - D_s[i]) * dfac;
        }
        if (Ps) Ps[i * kPS + lane] = p;
        dSs[i * kPS + lane] = ds;
    }
}

template <typename T, int NR, bool CAP>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(T* out, float* lse, const T* qkv, int T_len, int H, int KV, int hd,
                             float scale, float cap) {
    constexpr int S = Dims<NR>::S, D = Dims<NR>::D;
    extern __shared__ float smem[];
    float* Qs = smem;
    float* Ks = Qs + kTile * S;
    float* Vs = Ks + kTile * S;
    float* Ps = Vs + kTile * S;

    const int qt = gridDim.x - 1 - blockIdx.x;  // the longest rows of tiles first
    const int h = blockIdx.y, b = blockIdx.z;
    const int g = h / (H / KV);
    const long row = static_cast<long>(H + 2 * KV) * hd;
    const T* base = qkv + static_cast<long>(b) * T_len * row;
    const int q0 = qt * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    load_tile<T, NR>(Qs, base + q0 * row + static_cast<long>(h) * hd, row, min(kTile, T_len - q0),
                     hd);
    float m[kRows], l[kRows], o[kRows][NR];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < NR; ++c) o[r][c] = 0.0f;
    }

    for (int kt = 0; kt <= qt; ++kt) {
        const int k0 = kt * kTile;
        const int nk = min(kTile, T_len - k0);
        __syncthreads();  // the previous tile's K, V and P are no longer read
        load_tile<T, NR>(Ks, base + k0 * row + static_cast<long>(H + g) * hd, row, nk, hd);
        load_tile<T, NR>(Vs, base + k0 * row + static_cast<long>(H + KV + g) * hd, row, nk, hd);
        __syncthreads();

        float s[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) s[r] = 0.0f;
#pragma unroll 4
        for (int d = 0; d < D; ++d) {
            const float kd = Ks[lane * S + d];
#pragma unroll
            for (int r = 0; r < kRows; ++r) s[r] += Qs[(warp * kRows + r) * S + d] * kd;
        }
        const int kj = k0 + lane;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int i = warp * kRows + r;
            const bool visible = kj <= q0 + i;
            float dfac;
            const float x = visible ? softmax_score<CAP>(s[r], scale, cap, &dfac) : -INFINITY;
            // Key 0 is visible to every query, so m is finite from the first tile on.
            const float m_new = fmaxf(m[r], warp_max(x));
            const float alpha = expf(m[r] - m_new);
            const float p = visible ? expf(x - m_new) : 0.0f;
            l[r] = l[r] * alpha + p;
            m[r] = m_new;
#pragma unroll
            for (int c = 0; c < NR; ++c) o[r][c] *= alpha;
            Ps[i * kPS + lane] = p;
        }
        __syncwarp();
        // O += P·V: this thread's rows, columns lane + 32·c.
#pragma unroll 4
        for (int j = 0; j < kTile; ++j) {
            float v[NR];
#pragma unroll
            for (int c = 0; c < NR; ++c) v[c] = Vs[j * S + lane + 32 * c];
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                const float p = Ps[(warp * kRows + r) * kPS + j];
#pragma unroll
                for (int c = 0; c < NR; ++c) o[r][c] += p * v[c];
            }
        }
    }

    const long out_row = static_cast<long>(H) * hd;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int qi = q0 + warp * kRows + r;
        const float sum = warp_sum(l[r]);
        if (qi >= T_len) continue;
        T* o_row = out + (static_cast<long>(b) * T_len + qi) * out_row + static_cast<long>(h) * hd;
        const float inv = 1.0f / sum;
#pragma unroll
        for (int c = 0; c < NR; ++c) {
            const int d = lane + 32 * c;
            if (d < hd) o_row[d] = from_float<T>(o[r][c] * inv);
        }
        if (lane == 0) lse[(static_cast<long>(b) * H + h) * T_len + qi] = m[r] + logf(sum);
    }
}

template <typename T, int NR, bool CAP>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dkv_kernel(T* dqkv, const T* dout, const T* qkv, const T* out,
                                  const float* lse, int T_len, int H, int KV, int hd, float scale,
                                  float cap) {
    constexpr int S = Dims<NR>::S;
    extern __shared__ float smem[];
    float* Qs = smem;
    float* dOs = Qs + kTile * S;
    float* Ks = dOs + kTile * S;
    float* Vs = Ks + kTile * S;
    float* Ps = Vs + kTile * S;
    float* dSs = Ps + kTile * kPS;
    float* lse_s = dSs + kTile * kPS;
    float* D_s = lse_s + kTile;

    const int kt = blockIdx.x;  // early key tiles have the most work: they start first
    const int nt = gridDim.x;
    const int g = blockIdx.y, b = blockIdx.z;
    const int group = H / KV;
    const long row = static_cast<long>(H + 2 * KV) * hd;
    const long out_row = static_cast<long>(H) * hd;
    const long bT = static_cast<long>(b) * T_len;
    const T* base = qkv + bT * row;
    const int k0 = kt * kTile;
    const int nk = min(kTile, T_len - k0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    load_tile<T, NR>(Ks, base + k0 * row + static_cast<long>(H + g) * hd, row, nk, hd);
    load_tile<T, NR>(Vs, base + k0 * row + static_cast<long>(H + KV + g) * hd, row, nk, hd);
    float dk[kRows][NR], dv[kRows][NR];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < NR; ++c) dk[r][c] = dv[r][c] = 0.0f;

    for (int hh = 0; hh < group; ++hh) {
        const int h = g * group + hh;
        const long qcol = static_cast<long>(h) * hd;
        for (int qt = kt; qt < nt; ++qt) {  // earlier queries see none of these keys
            const int q0 = qt * kTile;
            const int nq = min(kTile, T_len - q0);
            __syncthreads();  // the previous query tile is no longer read
            load_tile<T, NR>(Qs, base + q0 * row + qcol, row, nq, hd);
            load_tile<T, NR>(dOs, dout + (bT + q0) * out_row + qcol, out_row, nq, hd);
            load_row_stats(lse_s, D_s, lse + (static_cast<long>(b) * H + h) * T_len,
                           dout + bT * out_row + qcol, out + bT * out_row + qcol, out_row, q0,
                           T_len, hd);
            __syncthreads();
            probs_and_dscores<NR, CAP>(Ps, dSs, Qs, dOs, Ks, Vs, lse_s, D_s, q0, k0, T_len, scale,
                                       cap);
            __syncthreads();
            // dV[j] += Σ_i P[i,j]·dO[i], dK[j] += Σ_i dS[i,j]·Q[i]; keys j = warp·kRows + r.
#pragma unroll 2
            for (int i = 0; i < kTile; ++i) {
                float q[NR], o[NR];
#pragma unroll
                for (int c = 0; c < NR; ++c) {
                    q[c] = Qs[i * S + lane + 32 * c];
                    o[c] = dOs[i * S + lane + 32 * c];
                }
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    const int j = warp * kRows + r;
                    const float p = Ps[i * kPS + j], ds = dSs[i * kPS + j];
#pragma unroll
                    for (int c = 0; c < NR; ++c) {
                        dv[r][c] += p * o[c];
                        dk[r][c] += ds * q[c];
                    }
                }
            }
        }
    }

    T* dbase = dqkv + bT * row;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int kj = k0 + warp * kRows + r;
        if (kj >= T_len) continue;
        T* dk_row = dbase + kj * row + static_cast<long>(H + g) * hd;
        T* dv_row = dbase + kj * row + static_cast<long>(H + KV + g) * hd;
#pragma unroll
        for (int c = 0; c < NR; ++c) {
            const int d = lane + 32 * c;
            if (d < hd) {
                dk_row[d] = from_float<T>(dk[r][c]);
                dv_row[d] = from_float<T>(dv[r][c]);
            }
        }
    }
}

template <typename T, int NR, bool CAP>
__global__ void __launch_bounds__(kThreads)
    attention_backward_dq_kernel(T* dqkv, const T* dout, const T* qkv, const T* out,
                                 const float* lse, int T_len, int H, int KV, int hd, float scale,
                                 float cap) {
    constexpr int S = Dims<NR>::S;
    extern __shared__ float smem[];
    float* Qs = smem;
    float* dOs = Qs + kTile * S;
    float* Ks = dOs + kTile * S;
    float* Vs = Ks + kTile * S;
    float* dSs = Vs + kTile * S + kTile * kPS;  // same layout as the dK/dV kernel, P unused
    float* lse_s = dSs + kTile * kPS;
    float* D_s = lse_s + kTile;

    const int qt = gridDim.x - 1 - blockIdx.x;  // the longest rows of tiles first
    const int h = blockIdx.y, b = blockIdx.z;
    const int g = h / (H / KV);
    const long row = static_cast<long>(H + 2 * KV) * hd;
    const long out_row = static_cast<long>(H) * hd;
    const long bT = static_cast<long>(b) * T_len;
    const long qcol = static_cast<long>(h) * hd;
    const T* base = qkv + bT * row;
    const int q0 = qt * kTile;
    const int nq = min(kTile, T_len - q0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    load_tile<T, NR>(Qs, base + q0 * row + qcol, row, nq, hd);
    load_tile<T, NR>(dOs, dout + (bT + q0) * out_row + qcol, out_row, nq, hd);
    load_row_stats(lse_s, D_s, lse + (static_cast<long>(b) * H + h) * T_len,
                   dout + bT * out_row + qcol, out + bT * out_row + qcol, out_row, q0, T_len, hd);
    float dq[kRows][NR];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int c = 0; c < NR; ++c) dq[r][c] = 0.0f;

    for (int kt = 0; kt <= qt; ++kt) {
        const int k0 = kt * kTile;
        const int nk = min(kTile, T_len - k0);
        __syncthreads();  // the previous key tile is no longer read (and Q, dO are loaded)
        load_tile<T, NR>(Ks, base + k0 * row + static_cast<long>(H + g) * hd, row, nk, hd);
        load_tile<T, NR>(Vs, base + k0 * row + static_cast<long>(H + KV + g) * hd, row, nk, hd);
        __syncthreads();
        probs_and_dscores<NR, CAP>(nullptr, dSs, Qs, dOs, Ks, Vs, lse_s, D_s, q0, k0, T_len, scale,
                                   cap);
        __syncwarp();  // each warp reads back only its own rows of dS
                       // dQ[i] += Σ_j dS[i,j]·K[j]; rows i = warp·kRows + r.
#pragma unroll 4
        for (int j = 0; j < kTile; ++j) {
            float k[NR];
#pragma unroll
            for (int c = 0; c < NR; ++c) k[c] = Ks[j * S + lane + 32 * c];
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                const float ds = dSs[(warp * kRows + r) * kPS + j];
#pragma unroll
                for (int c = 0; c < NR; ++c) dq[r][c] += ds * k[c];
            }
        }
    }

    T* dbase = dqkv + bT * row;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int qi = q0 + warp * kRows + r;
        if (qi >= T_len) continue;
        T* dq_row = dbase + qi * row + qcol;
#pragma unroll
        for (int c = 0; c < NR; ++c) {
            const int d = lane + 32 * c;
            if (d < hd) dq_row[d] = from_float<T>(dq[r][c]);
        }
    }
}

void check_shape(int B, int T_len, int H, int KV, int hd, float softcap) {
    if (B < 0 || T_len < 0 || hd <= 0 || hd > kMaxHead || KV <= 0 || H % KV != 0)
        fail_call("bad shape: needs KV | H and 0 < hd <= 192", "attention", __FILE__, __LINE__);
    if (!(softcap >= 0.0f) || !std::isfinite(softcap))
        fail_call("softcap must be 0 (off) or a positive cap", "attention", __FILE__, __LINE__);
}

template <typename T, int NR>
void forward_nr(T* out, float* lse, const T* qkv, int B, int T_len, int H, int KV, int hd,
                float cap, cudaStream_t stream) {
    constexpr std::size_t smem = Dims<NR>::forward_smem;
    auto kernel =
        cap > 0.0f ? attention_forward_kernel<T, NR, true> : attention_forward_kernel<T, NR, false>;
    AGPT_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const dim3 grid(ceil_div(T_len, kTile), H, B);
    const float scale = 1.0f / sqrtf(static_cast<float>(hd));
    kernel<<<grid, kThreads, smem, stream>>>(out, lse, qkv, T_len, H, KV, hd, scale, cap);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T, int NR>
void backward_nr(T* dqkv, const T* dout, const T* qkv, const T* out, const float* lse, int B,
                 int T_len, int H, int KV, int hd, float cap, cudaStream_t stream) {
    constexpr std::size_t smem = Dims<NR>::backward_smem;
    const float scale = 1.0f / sqrtf(static_cast<float>(hd));
    const int nt = static_cast<int>(ceil_div(T_len, kTile));
    auto dkv = cap > 0.0f ? attention_backward_dkv_kernel<T, NR, true>
                          : attention_backward_dkv_kernel<T, NR, false>;
    AGPT_CUDA_CHECK(cudaFuncSetAttribute(dkv, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dkv<<<dim3(nt, KV, B), kThreads, smem, stream>>>(dqkv, dout, qkv, out, lse, T_len, H, KV, hd,
                                                     scale, cap);
    AGPT_CUDA_CHECK_LAUNCH();
    auto dq = cap > 0.0f ? attention_backward_dq_kernel<T, NR, true>
                         : attention_backward_dq_kernel<T, NR, false>;
    AGPT_CUDA_CHECK(cudaFuncSetAttribute(dq, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dq<<<dim3(nt, H, B), kThreads, smem, stream>>>(dqkv, dout, qkv, out, lse, T_len, H, KV, hd,
                                                   scale, cap);
    AGPT_CUDA_CHECK_LAUNCH();
}

}  // namespace

template <typename T>
void attention_forward(T* out, float* lse, const T* qkv, int B, int T_len, int H, int KV, int hd,
                       float softcap, cudaStream_t stream) {
    check_shape(B, T_len, H, KV, hd, softcap);
    if (B == 0 || T_len == 0 || H == 0) return;
    if constexpr (std::is_same_v<T, bf16>)
        if (detail::attention_forward_tc(out, lse, qkv, B, T_len, H, KV, hd, softcap, stream))
            return;
    if (hd <= 32)
        forward_nr<T, 1>(out, lse, qkv, B, T_len, H, KV, hd, softcap, stream);
    else if (hd <= 64)
        forward_nr<T, 2>(out, lse, qkv, B, T_len, H, KV, hd, softcap, stream);
    else if (hd <= 128)
        forward_nr<T, 4>(out, lse, qkv, B, T_len, H, KV, hd, softcap, stream);
    else
        forward_nr<T, 6>(out, lse, qkv, B, T_len, H, KV, hd, softcap, stream);
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const float* lse, int B,
                        int T_len, int H, int KV, int hd, float softcap, cudaStream_t stream) {
    check_shape(B, T_len, H, KV, hd, softcap);
    if (B == 0 || T_len == 0 || H == 0) return;
    if constexpr (std::is_same_v<T, bf16>)
        if (detail::attention_backward_tc(dqkv, dout, qkv, out, lse, B, T_len, H, KV, hd, softcap,
                                          stream))
            return;
    if (hd <= 32)
        backward_nr<T, 1>(dqkv, dout, qkv, out, lse, B, T_len, H, KV, hd, softcap, stream);
    else if (hd <= 64)
        backward_nr<T, 2>(dqkv, dout, qkv, out, lse, B, T_len, H, KV, hd, softcap, stream);
    else if (hd <= 128)
        backward_nr<T, 4>(dqkv, dout, qkv, out, lse, B, T_len, H, KV, hd, softcap, stream);
    else
        backward_nr<T, 6>(dqkv, dout, qkv, out, lse, B, T_len, H, KV, hd, softcap, stream);
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int, int, float,
                                       cudaStream_t);
template void attention_forward<bf16>(bf16*, float*, const bf16*, int, int, int, int, int, float,
                                      cudaStream_t);
template void attention_backward<float>(float*, const float*, const float*, const float*,
                                        const float*, int, int, int, int, int, float, cudaStream_t);
template void attention_backward<bf16>(bf16*, const bf16*, const bf16*, const bf16*, const float*,
                                       int, int, int, int, int, float, cudaStream_t);

}  // namespace agpt::cuda
