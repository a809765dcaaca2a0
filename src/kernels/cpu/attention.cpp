#include "kernels/cpu/attention.h"

#include "kernels/cpu/softcap.h"
#include "kernels/cpu/vec_math.h"

#include <omp.h>

// The 64-byte vector type is passed between inline helpers of this file only; without AVX-512
// GCC warns that such arguments would have another ABI across translation units.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"

// FlashAttention-2 on the CPU. Every product below has one shape, C[r, 0:W] (+)= Σ_k A[r, k] ·
// B[k, 0:W]: B's rows are contiguous vectors, A is read one broadcast element at a time, so A
// can be any strided view (often qkv, out or dout in place, or a transpose of them) and only
// B operands are copied into per-thread tile scratch.
//
// The forward keeps queries in the vector lanes (scores as Sᵀ: keys × queries, the output as
// Oᵀ: hd × queries), so the online softmax's per-query max, sum and rescale are plain vertical
// vector operations with no horizontal reductions. The backward needs no reductions over a
// tile row and keeps the natural layout.
namespace agpt::cpu {
namespace {

// Queries and keys per tile. Square, aligned tiles put each query's own key in the diagonal
// tile, so every query sees at least one key of every tile it visits and its running max is
// finite from the first tile on. Measured on one Zen 4 core (bench/attention_bench.cpp), hd
// 16–128: 32 and 64 tie in the forward, 64 is 5–10% faster in the backward; 128 loses 30% in
// the forward (the 64 KiB score tile leaves L1).
constexpr int kTile = 64;

// One 64-byte vector (GCC/Clang vector extension). Plain loops over a block of accumulator
// rows left the accumulators on the stack, a load and store around every FMA; named vector
// values stay in registers.
typedef float vfloat __attribute__((vector_size(64)));
typedef double vdouble __attribute__((vector_size(64)));
template <typename T>
struct Simd;
template <>
struct Simd<float> {
    using V = vfloat;
};
template <>
struct Simd<double> {
    using V = vdouble;
};

template <typename T>
inline typename Simd<T>::V vload(const T* p) {
    typename Simd<T>::V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <typename T>
inline void vstore(T* p, typename Simd<T>::V v) {
    std::memcpy(p, &v, sizeof v);
}

// Left alone, GCC re-reads each B vector from L1 as a memory operand of every FMA that uses
// it: 20 loads per 16 FMAs, which capped the products at ~80% of the FMA rate (measured on
// Zen 4). An empty asm that claims to modify the value pins it in a register.
// Only a vector that fits one register can be pinned (64-byte ones need AVX-512).
#if defined(__AVX512F__)
inline constexpr std::size_t kWidestRegisterBytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t kWidestRegisterBytes = 32;
#else
inline constexpr std::size_t kWidestRegisterBytes = 16;
#endif

template <typename V>
inline void in_register(V& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if constexpr (sizeof(V) <= kWidestRegisterBytes) asm("" : "+v"(v));
#else
    (void)v;
#endif
}

// Rows [r, r + Rows) of mm below, accumulators in registers.
template <typename T, int W, int Rows, bool Accumulate>
inline void mm_block(T* __restrict C, long ldc, const T* __restrict A, long ar, long ak,
                     const T* __restrict B, long ldb, int K) {
    using V = typename Simd<T>::V;
    constexpr int kVecs = W * static_cast<int>(sizeof(T)) / 64;
    V acc[Rows][kVecs];
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 16
        for (int v = 0; v < kVecs; ++v) acc[i][v] = V{};
    for (int k = 0; k < K; ++k) {
        V b[kVecs];
#pragma GCC unroll 16
        for (int v = 0; v < kVecs; ++v) {
            b[v] = vload(B + k * ldb + v * (64 / sizeof(T)));
            in_register(b[v]);
        }
#pragma GCC unroll 16
        for (int i = 0; i < Rows; ++i) {
            const T a = A[i * ar + k * ak];
#pragma GCC unroll 16
            for (int v = 0; v < kVecs; ++v) acc[i][v] += a * b[v];
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 16
        for (int v = 0; v < kVecs; ++v) {
            T* c = C + i * ldc + v * (64 / sizeof(T));
            vstore(c, Accumulate ? vload(c) + acc[i][v] : acc[i][v]);
        }
}

// C[r·ldc + w] (+)= Σ_k A[r·ar + k·ak] · B[k·ldb + w] for r < R, k < K, w < W. W is a compile-
// time width, a multiple of the vector (or 0: runtime width w_rt, for head sizes without a
// specialisation).
template <typename T, int W, bool Accumulate>
inline void mm(T* __restrict C, long ldc, const T* __restrict A, long ar, long ak,
               const T* __restrict B, long ldb, int R, int K, int w_rt = W) {
    if constexpr (W == 0) {
        for (int r = 0; r < R; ++r) {
            T* c = C + r * ldc;
            if (!Accumulate) std::fill(c, c + w_rt, T(0));
            for (int k = 0; k < K; ++k) {
                const T a = A[r * ar + k * ak];
                const T* b = B + k * ldb;
                for (int w = 0; w < w_rt; ++w) c[w] += a * b[w];
            }
        }
    } else {
        static_assert(W * sizeof(T) % 64 == 0);
        // About 16 of the 32 vector registers hold accumulators; the rest B and broadcasts.
        constexpr int kRows = std::clamp(16 * 64 / static_cast<int>(W * sizeof(T)), 1, 8);
        int r = 0;
        for (; r + kRows <= R; r += kRows)
            mm_block<T, W, kRows, Accumulate>(C + r * ldc, ldc, A + r * ar, ar, ak, B, ldb, K);
        for (; r < R; ++r)
            mm_block<T, W, 1, Accumulate>(C + r * ldc, ldc, A + r * ar, ar, ak, B, ldb, K);
    }
}

// Transposed copy of n rows of one head (stride row): dst (hd × kTile), column i = row i,
// zero in columns [n, kTile) so that padded lanes compute finite values.
template <typename T>
inline void load_transposed(T* __restrict dst, const T* __restrict src, long row, int n, int hd) {
    for (int i = 0; i < n; ++i)
        for (int d = 0; d < hd; ++d) dst[d * kTile + i] = src[i * row + d];
    for (int d = 0; d < hd; ++d) std::fill(dst + d * kTile + n, dst + (d + 1) * kTile, T(0));
}

// x[j] = cap·tanh(x[j]·scale/cap) for j < n (−inf stays −inf). GCC's inliner left exp_vec out
// of line in this loop (a scalar call per score: the capped forward ran 5-9x slower); flatten
// inlines it and the loop vectorises.
template <typename T>
[[gnu::flatten]] void softcap_scores(T* __restrict x, int n, T scale, T cap) {
    for (int j = 0; j < n; ++j) x[j] = softcap_vec(x[j] * scale, cap);
}

struct Shape {
    int B, T_len, H, KV, hd;
    long row() const { return static_cast<long>(H + 2 * KV) * hd; }
    int group() const { return H / KV; }
    // Multiply-adds of the forward's two products over the tiles it visits.
    double tile_fmas() const {
        const double nt = (T_len + kTile - 1) / kTile;
        return 2.0 * B * H * nt * (nt + 1) / 2 * kTile * kTile * hd;
    }
};

// Below this much work a parallel region costs more than it saves (thread wake-up and the
// closing barrier, far worse when the cores are shared and a thread is descheduled).
constexpr double kMinParallelFmas = 1 << 22;  // ~100 µs of single-core work

template <typename T, int HD>
void forward_impl(T* out, T* lse, const T* qkv, const Shape& sh, T cap) {
    constexpr T kNegInf = -std::numeric_limits<T>::infinity();
    const int hd = HD > 0 ? HD : sh.hd;
    const long row = sh.row();
    const long out_row = static_cast<long>(sh.H) * hd;
    const int nqt = (sh.T_len + kTile - 1) / kTile;
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    // With a soft-cap the scores are capped in the tile (scale applied there), so the exponent
    // takes them as they are.
    const bool capped = cap > T(0);
    const T escale = capped ? T(1) : scale;
    const long ntasks = static_cast<long>(sh.B) * sh.H * nqt;
    using V = typename Simd<T>::V;
    constexpr int kLanes = 64 / sizeof(T);

#pragma omp parallel if (sh.tile_fmas() >= kMinParallelFmas)
    {
        std::vector<T> buf(static_cast<size_t>(2 * hd * kTile + kTile * kTile));
        T* Qt = buf.data();       // hd × queries
        T* Ot = Qt + hd * kTile;  // hd × queries, unnormalised output
        T* St = Ot + hd * kTile;  // keys × queries: scores, then probabilities
        T m[kTile], l[kTile], m_new[kTile], alpha[kTile];

        // Dynamic: causal tiles further down the sequence hold more work. Each task writes
        // only its own rows, so the result does not depend on which thread runs it.
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < ntasks; ++task) {
            const int qt = nqt - 1 - static_cast<int>(task % nqt);  // longest tiles first
            const long bh = task / nqt;
            const int h = static_cast<int>(bh % sh.H);
            const int b = static_cast<int>(bh / sh.H);
            const int g = h / sh.group();
            const int q0 = qt * kTile;
            const int nq = std::min(kTile, sh.T_len - q0);
            const T* base = qkv + static_cast<long>(b) * sh.T_len * row;
            const T* kbase = base + static_cast<long>(sh.H + g) * hd;
            const T* vbase = base + static_cast<long>(sh.H + sh.KV + g) * hd;

            load_transposed(Qt, base + q0 * row + static_cast<long>(h) * hd, row, nq, hd);
            std::fill(Ot, Ot + hd * kTile, T(0));
            std::fill(m, m + kTile, kNegInf);
            std::fill(l, l + kTile, T(0));

            for (int kt = 0; kt <= qt; ++kt) {
                const int k0 = kt * kTile;
                const int nk = std::min(kTile, sh.T_len - k0);
                // Sᵀ = K · Qᵀ, unscaled; the 1/√hd goes into the exponent below.
                mm<T, kTile, false>(St, kTile, kbase + k0 * row, row, 1, Qt, kTile, nk, hd);
                for (int j = nk; j < kTile; ++j)
                    std::fill(St + j * kTile, St + (j + 1) * kTile, kNegInf);
                if (kt == qt)  // the diagonal tile: key j is visible to queries i >= j
                    for (int j = 1; j < kTile; ++j)
                        std::fill(St + j * kTile, St + j * kTile + j, kNegInf);
                if (capped)  // s -> cap·tanh(s·scale/cap); masked −inf stays −inf
                    softcap_scores(St, nk * kTile, scale, cap);

                // Every query sees key k0, so the max is finite.
                // Written with vector types: GCC left the plain-loop version of this column
                // max scalar, with a branch per element.
                for (int i = 0; i < kTile; i += kLanes) {
                    V mx = vload(St + i);
                    for (int j = 1; j < kTile; ++j) {
                        const V x = vload(St + j * kTile + i);
                        mx = mx < x ? x : mx;
                    }
                    vstore(m_new + i, mx);
                }
                for (int i = 0; i < kTile; ++i) {
                    m_new[i] = std::max(m[i], m_new[i] * escale);  // escale > 0 keeps the argmax
                    alpha[i] = exp_vec(m[i] - m_new[i]);
                    l[i] *= alpha[i];
                    m[i] = m_new[i];
                }
                for (int j = 0; j < kTile; ++j) {
                    T* s = St + j * kTile;
                    for (int i = 0; i < kTile; ++i) {
                        s[i] = exp_vec(s[i] * escale - m_new[i]);
                        l[i] += s[i];
                    }
                }
                for (int d = 0; d < hd; ++d)
                    for (int i = 0; i < kTile; ++i) Ot[d * kTile + i] *= alpha[i];
                // Oᵀ += Vᵀ · Pᵀ, Vᵀ read in place.
                mm<T, kTile, true>(Ot, kTile, vbase + k0 * row, 1, row, St, kTile, hd, nk);
            }

            for (int i = 0; i < nq; ++i) {
                T* o = out + (static_cast<long>(b) * sh.T_len + q0 + i) * out_row +
                       static_cast<long>(h) * hd;
                const T inv = T(1) / l[i];
                for (int d = 0; d < hd; ++d) o[d] = Ot[d * kTile + i] * inv;
                lse[(static_cast<long>(b) * sh.H + h) * sh.T_len + q0 + i] = m[i] + std::log(l[i]);
            }
        }
    }
}

template <typename T, int HD>
void backward_impl(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                   const Shape& sh, T cap) {
    constexpr T kNegInf = -std::numeric_limits<T>::infinity();
    const int hd = HD > 0 ? HD : sh.hd;
    const long row = sh.row();
    const long out_row = static_cast<long>(sh.H) * hd;
    const int group = sh.group();
    const int T_len = sh.T_len;
    const int nt = (T_len + kTile - 1) / kTile;
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    const long ntasks = static_cast<long>(sh.B) * sh.KV;

    // Key tiles per pass over the query side. Each pass streams the group's Q, dO and out rows
    // (strided rows, a new page almost every row); at T = 8192 one pass per key tile ran at
    // 57 GFLOP/s against 80 at T = 4096. Sized so that the key-side scratch stays ~256 KiB.
    const int block = std::max(1, 256 / hd);

    // One task per (batch, kv head) owns the dK/dV rows of that head and the dQ rows of its
    // query heads, and visits them in a fixed order: no two threads write the same element
    // and each sum is formed in the same order whatever the thread count.
#pragma omp parallel if (sh.tile_fmas() >= kMinParallelFmas)
    {
        const long kv_tile = static_cast<long>(hd) * kTile;
        std::vector<T> buf(static_cast<size_t>(4 * block * kv_tile + 2 * kTile * kTile));
        T* Kt = buf.data();              // per key tile of the block: hd × keys
        T* Vt = Kt + block * kv_tile;    // hd × keys
        T* dKt = Vt + block * kv_tile;   // hd × keys accumulators
        T* dVt = dKt + block * kv_tile;  // hd × keys accumulators
        T* P = dVt + block * kv_tile;    // queries × keys
        T* dS = P + kTile * kTile;       // queries × keys: dP, then dS/√hd
        T D[kTile];

#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < ntasks; ++task) {
            const int g = static_cast<int>(task % sh.KV);
            const int b = static_cast<int>(task / sh.KV);
            const long bT = static_cast<long>(b) * T_len;
            const T* base = qkv + bT * row;
            T* dbase = dqkv + bT * row;
            const long kcol = static_cast<long>(sh.H + g) * hd;
            const long vcol = static_cast<long>(sh.H + sh.KV + g) * hd;

            for (int kb = 0; kb < nt; kb += block) {
                const int kb_end = std::min(nt, kb + block);
                for (int kt = kb; kt < kb_end; ++kt) {
                    const int k0 = kt * kTile;
                    const int nk = std::min(kTile, T_len - k0);
                    const long off = (kt - kb) * kv_tile;
                    load_transposed(Kt + off, base + k0 * row + kcol, row, nk, hd);
                    load_transposed(Vt + off, base + k0 * row + vcol, row, nk, hd);
                }
                std::fill(dKt, dKt + (kb_end - kb) * kv_tile, T(0));
                std::fill(dVt, dVt + (kb_end - kb) * kv_tile, T(0));

                for (int hh = 0; hh < group; ++hh) {
                    const long qcol = static_cast<long>(g * group + hh) * hd;
                    const T* lse_h = lse + (static_cast<long>(b) * sh.H + g * group + hh) * T_len;
                    for (int qt = kb; qt < nt; ++qt) {  // earlier queries see none of these keys
                        const int q0 = qt * kTile;
                        const int nq = std::min(kTile, T_len - q0);
                        const T* q = base + q0 * row + qcol;
                        const T* d_o = dout + (bT + q0) * out_row + qcol;
                        const T* o = out + (bT + q0) * out_row + qcol;
                        for (int i = 0; i < nq; ++i) {
                            T acc = 0;
                            for (int d = 0; d < hd; ++d)
                                acc += d_o[i * out_row + d] * o[i * out_row + d];
                            D[i] = acc;
                        }
                        for (int kt = kb; kt < std::min(kb_end, qt + 1); ++kt) {
                            const int k0 = kt * kTile;
                            const int nk = std::min(kTile, T_len - k0);
                            const long off = (kt - kb) * kv_tile;
                            // S = Q · Kᵀ as in the forward, dP = dO · Vᵀ.
                            mm<T, kTile, false>(P, kTile, q, row, 1, Kt + off, kTile, nq, hd);
                            mm<T, kTile, false>(dS, kTile, d_o, out_row, 1, Vt + off, kTile, nq,
                                                hd);
                            if (qt == kt)  // diagonal tile; also masks keys past the end
                                for (int i = 0; i < nq; ++i)
                                    std::fill(P + i * kTile + i + 1, P + (i + 1) * kTile, kNegInf);
                            for (int i = 0; i < nq; ++i) {
                                T* p = P + i * kTile;
                                T* ds = dS + i * kTile;
                                const T L = lse_h[q0 + i];
                                if (cap > T(0)) {
                                    // y = cap·tanh(s·scale/cap): dS/ds = (1 − (y/cap)²)·scale.
                                    for (int j = 0; j < kTile; ++j) {
                                        const T y = softcap_vec(p[j] * scale, cap);
                                        p[j] = exp_vec(y - L);
                                        ds[j] = p[j] * (ds[j] - D[i]) *
                                                (softcap_grad_from_output(y, cap) * scale);
                                    }
                                } else {
                                    for (int j = 0; j < kTile; ++j) {
                                        p[j] = exp_vec(p[j] * scale - L);
                                        ds[j] = p[j] * (ds[j] - D[i]) * scale;
                                    }
                                }
                            }
                            // dVᵀ += dOᵀ · P, dKᵀ += Qᵀ · dS (Aᵀ read in place), dQ += dS · K.
                            mm<T, kTile, true>(dVt + off, kTile, d_o, 1, out_row, P, kTile, hd, nq);
                            mm<T, kTile, true>(dKt + off, kTile, q, 1, row, dS, kTile, hd, nq);
                            mm<T, HD, true>(dbase + q0 * row + qcol, row, dS, kTile, 1,
                                            base + k0 * row + kcol, row, nq, nk, hd);
                        }
                    }
                }

                for (int kt = kb; kt < kb_end; ++kt) {
                    const int k0 = kt * kTile;
                    const int nk = std::min(kTile, T_len - k0);
                    const T* dkt = dKt + (kt - kb) * kv_tile;
                    const T* dvt = dVt + (kt - kb) * kv_tile;
                    for (int j = 0; j < nk; ++j) {
                        T* dk = dbase + (k0 + j) * row + kcol;
                        T* dv = dbase + (k0 + j) * row + vcol;
                        for (int d = 0; d < hd; ++d) {
                            dk[d] += dkt[d * kTile + j];
                            dv[d] += dvt[d * kTile + j];
                        }
                    }
                }
            }
        }
    }
}

void check_shape(const Shape& sh, double softcap) {
    if (sh.B < 0 || sh.T_len < 0 || sh.hd <= 0 || sh.KV <= 0 || sh.H % sh.KV != 0)
        fail("attention: bad shape B={} T={} H={} KV={} hd={} (KV must divide H)", sh.B, sh.T_len,
             sh.H, sh.KV, sh.hd);
    if (!(softcap >= 0.0) || !std::isfinite(softcap))
        fail("attention: softcap {} must be 0 (off) or a positive cap", softcap);
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, int B, int T_len, int H, int KV, int hd,
                       T softcap) {
    const Shape sh{B, T_len, H, KV, hd};
    check_shape(sh, softcap);
    switch (hd) {
        case 16:
            forward_impl<T, 16>(out, lse, qkv, sh, softcap);
            break;
        case 32:
            forward_impl<T, 32>(out, lse, qkv, sh, softcap);
            break;
        case 64:
            forward_impl<T, 64>(out, lse, qkv, sh, softcap);
            break;
        case 128:
            forward_impl<T, 128>(out, lse, qkv, sh, softcap);
            break;
        default:
            forward_impl<T, 0>(out, lse, qkv, sh, softcap);
            break;
    }
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int B,
                        int T_len, int H, int KV, int hd, T softcap) {
    const Shape sh{B, T_len, H, KV, hd};
    check_shape(sh, softcap);
    switch (hd) {
        case 16:
            backward_impl<T, 16>(dqkv, dout, qkv, out, lse, sh, softcap);
            break;
        case 32:
            backward_impl<T, 32>(dqkv, dout, qkv, out, lse, sh, softcap);
            break;
        case 64:
            backward_impl<T, 64>(dqkv, dout, qkv, out, lse, sh, softcap);
            break;
        case 128:
            backward_impl<T, 128>(dqkv, dout, qkv, out, lse, sh, softcap);
            break;
        default:
            backward_impl<T, 0>(dqkv, dout, qkv, out, lse, sh, softcap);
            break;
    }
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int, int,
                                       float);
template void attention_forward<double>(double*, double*, const double*, int, int, int, int, int,
                                        double);
template void attention_backward<float>(float*, const float*, const float*, const float*,
                                        const float*, int, int, int, int, int, float);
template void attention_backward<double>(double*, const double*, const double*, const double*,
                                         const double*, int, int, int, int, int, double);

}  // namespace agpt::cpu
