#include "kernels/cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

// FlashAttention-2 on the CPU. Every product below has one shape, C[r, 0:W] += Σ_k A[r, k] ·
// B[k, 0:W], with the W columns contiguous: the compiler vectorises along W and keeps a block
// of C rows in registers. Tiles are copied (and where needed transposed) into per-thread
// scratch so that each product reads a dense operand; the copies cost O(tile · hd) against
// the O(tile² · hd) of the products.
namespace agpt::cpu {
namespace {

// 64 × 64 measured fastest for hd 16–128 (bench/attention_bench.cpp): 32-query tiles spend
// too long in per-row softmax bookkeeping, 128-key tiles push the score block out of L1.
constexpr int kTileQ = 64;
constexpr int kTileK = 64;
// Square, aligned tiles put every query's own key in the diagonal tile, so no row of a tile
// it visits is fully masked before its running max is finite.
static_assert(kTileQ == kTileK);

// exp written out so that it vectorises without -ffast-math (std::exp stays a scalar libm
// call in the loops below). Range reduction x = n·ln2 + r, |r| <= ln2/2, then a Taylor
// polynomial whose truncation error is below the type's epsilon. Inputs here are <= 0; -inf
// (masked scores, the first tile's running max) gives exactly 0.
inline float exp_vec(float x) {
    constexpr float lo = -87.0f;  // below this exp underflows float's normal range
    const float xc = std::min(std::max(x, lo), 88.0f);
    constexpr float round_magic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
    const float n = (xc * 1.44269504088896341f + round_magic) - round_magic;
    float r = xc - n * 0.693359375f;  // ln2 split so that n·hi is exact
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
    return x < lo ? 0.0f : p * scale;
}

inline double exp_vec(double x) {
    constexpr double lo = -708.0;
    const double xc = std::min(std::max(x, lo), 709.0);
    constexpr double round_magic = 6755399441055744.0;  // 1.5·2^52
    const double n = (xc * 1.4426950408889634074 + round_magic) - round_magic;
    double r = xc - n * 6.93147180369123816490e-01;
    r = r - n * 1.90821492927058770002e-10;
    // 1/k! for k = 13 … 0; r^14/14! < 1e-17 on the reduced range.
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const double scale = std::bit_cast<double>((static_cast<int64_t>(n) + 1023) << 52);
    return x < lo ? 0.0 : p * scale;
}

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

// Rows [r, r + Rows) of mm_rows below, accumulators in registers.
template <typename T, int W, int Rows, bool Accumulate>
inline void mm_block(T* __restrict C, long ldc, const T* __restrict A, long lda,
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
        for (int v = 0; v < kVecs; ++v) b[v] = vload(B + k * ldb + v * (64 / sizeof(T)));
#pragma GCC unroll 16
        for (int i = 0; i < Rows; ++i) {
            const T a = A[i * lda + k];
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

// C[r·ldc + w] (+)= Σ_k A[r·lda + k] · B[k·ldb + w] for r < R, k < K, w < W. W is a compile-
// time width, a multiple of the vector (or 0: runtime width w_rt, for head sizes without a
// specialisation).
template <typename T, int W, bool Accumulate>
inline void mm_rows(T* __restrict C, long ldc, const T* __restrict A, long lda,
                    const T* __restrict B, long ldb, int R, int K, int w_rt) {
    if constexpr (W == 0) {
        for (int r = 0; r < R; ++r) {
            T* c = C + r * ldc;
            if (!Accumulate) std::fill(c, c + w_rt, T(0));
            for (int k = 0; k < K; ++k) {
                const T a = A[r * lda + k];
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
            mm_block<T, W, kRows, Accumulate>(C + r * ldc, ldc, A + r * lda, lda, B, ldb, K);
        for (; r < R; ++r)
            mm_block<T, W, 1, Accumulate>(C + r * ldc, ldc, A + r * lda, lda, B, ldb, K);
    }
}

// Masks scores of keys after the query (k0 + j > q0 + i) to -inf. Rows past the sequence end
// are never read; key columns past it are masked by the same test since every query is < T.
template <typename T>
inline void causal_mask(T* S, int q0, int nq, int k0) {
    if (k0 + kTileK - 1 <= q0) return;  // tile entirely at or below the diagonal
    for (int i = 0; i < nq; ++i) {
        const int first_masked = std::max(0, q0 + i - k0 + 1);
        T* s = S + i * kTileK;
        for (int j = first_masked; j < kTileK; ++j) s[j] = -std::numeric_limits<T>::infinity();
    }
}

// Row max / row sum over one kTileK row, in fixed-width partial lanes: a plain scalar
// reduction would not vectorise without reassociation, and its order is fixed either way.
constexpr int kLanes = 16;

template <typename T>
inline T row_max(const T* s) {
    T part[kLanes];
    for (int l = 0; l < kLanes; ++l) part[l] = s[l];
    for (int j = kLanes; j < kTileK; j += kLanes)
        for (int l = 0; l < kLanes; ++l) part[l] = std::max(part[l], s[j + l]);
    T m = part[0];
    for (int l = 1; l < kLanes; ++l) m = std::max(m, part[l]);
    return m;
}

// s[j] = exp(s[j] - m) in place; returns Σ_j s[j].
template <typename T>
inline T exp_row(T* s, T m) {
    T part[kLanes] = {};
    for (int j = 0; j < kTileK; j += kLanes)
        for (int l = 0; l < kLanes; ++l) {
            const T p = exp_vec(s[j + l] - m);
            s[j + l] = p;
            part[l] += p;
        }
    for (int w = kLanes / 2; w > 0; w /= 2)
        for (int l = 0; l < w; ++l) part[l] += part[l + w];
    return part[0];
}

struct Shape {
    int B, T_len, H, KV, hd;
    long row() const { return static_cast<long>(H + 2 * KV) * hd; }
    int group() const { return H / KV; }
};

// Copies rows [t0, t0+n) of one head (column offset col) into dst (n × hd) multiplied by mul,
// and zero rows [n, rows) so that padded tiles hold no stale values.
template <typename T>
inline void load_rows(T* __restrict dst, const T* __restrict src, long row, int t0, int n, int rows,
                      int hd, T mul) {
    for (int i = 0; i < n; ++i) {
        const T* s = src + (t0 + i) * row;
        for (int d = 0; d < hd; ++d) dst[i * hd + d] = s[d] * mul;
    }
    std::fill(dst + static_cast<long>(n) * hd, dst + static_cast<long>(rows) * hd, T(0));
}

// Transposed copy: dst (hd × cols) column i = row t0 + i of the head, zero past n.
template <typename T>
inline void load_cols(T* __restrict dst, const T* __restrict src, long row, int t0, int n, int cols,
                      int hd) {
    for (int i = 0; i < n; ++i) {
        const T* s = src + (t0 + i) * row;
        for (int d = 0; d < hd; ++d) dst[d * cols + i] = s[d];
    }
    for (int d = 0; d < hd; ++d) std::fill(dst + d * cols + n, dst + (d + 1) * cols, T(0));
}

template <typename T, int HD>
void forward_impl(T* out, T* lse, const T* qkv, const Shape& sh) {
    const int hd = HD > 0 ? HD : sh.hd;
    const long row = sh.row();
    const int nqt = (sh.T_len + kTileQ - 1) / kTileQ;
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    const long ntasks = static_cast<long>(sh.B) * sh.H * nqt;
    const long out_row = static_cast<long>(sh.H) * hd;

#pragma omp parallel
    {
        std::vector<T> buf(static_cast<size_t>(3 * kTileQ * hd + kTileK * hd + kTileQ * kTileK));
        T* Q = buf.data();        // kTileQ × hd, pre-multiplied by 1/√hd
        T* O = Q + kTileQ * hd;   // kTileQ × hd, unnormalised output
        T* Kt = O + kTileQ * hd;  // hd × kTileK
        T* V = Kt + hd * kTileK;  // kTileK × hd
        T* S = V + kTileK * hd;   // kTileQ × kTileK scores, then probabilities
        T m[kTileQ], l[kTileQ];

        // Dynamic: causal tiles further down the sequence hold more work. Each task writes
        // only its own rows, so the result does not depend on which thread runs it.
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < ntasks; ++task) {
            const int qt = nqt - 1 - static_cast<int>(task % nqt);  // longest tiles first
            const long bh = task / nqt;
            const int h = static_cast<int>(bh % sh.H);
            const int b = static_cast<int>(bh / sh.H);
            const int g = h / sh.group();
            const int q0 = qt * kTileQ;
            const int nq = std::min(kTileQ, sh.T_len - q0);
            const T* base = qkv + static_cast<long>(b) * sh.T_len * row;

            load_rows(Q, base + static_cast<long>(h) * hd, row, q0, nq, kTileQ, hd, scale);
            std::fill(O, O + kTileQ * hd, T(0));
            std::fill(m, m + kTileQ, -std::numeric_limits<T>::infinity());
            std::fill(l, l + kTileQ, T(0));

            const int nkt = (q0 + nq - 1) / kTileK + 1;
            for (int kt = 0; kt < nkt; ++kt) {
                const int k0 = kt * kTileK;
                const int nk = std::min(kTileK, sh.T_len - k0);
                load_cols(Kt, base + static_cast<long>(sh.H + g) * hd, row, k0, nk, kTileK, hd);
                load_rows(V, base + static_cast<long>(sh.H + sh.KV + g) * hd, row, k0, nk, kTileK,
                          hd, T(1));
                mm_rows<T, kTileK, false>(S, kTileK, Q, hd, Kt, kTileK, nq, hd, kTileK);
                causal_mask(S, q0, nq, k0);
                for (int i = 0; i < nq; ++i) {
                    T* s = S + i * kTileK;
                    const T m_new = std::max(m[i], row_max(s));
                    const T alpha = exp_vec(m[i] - m_new);
                    l[i] = l[i] * alpha + exp_row(s, m_new);
                    m[i] = m_new;
                    T* o = O + i * hd;
                    for (int d = 0; d < hd; ++d) o[d] *= alpha;
                }
                mm_rows<T, HD, true>(O, hd, S, kTileK, V, hd, nq, nk, hd);
            }

            for (int i = 0; i < nq; ++i) {
                T* o = out + (static_cast<long>(b) * sh.T_len + q0 + i) * out_row +
                       static_cast<long>(h) * hd;
                const T inv = T(1) / l[i];
                for (int d = 0; d < hd; ++d) o[d] = O[i * hd + d] * inv;
                lse[(static_cast<long>(b) * sh.H + h) * sh.T_len + q0 + i] = m[i] + std::log(l[i]);
            }
        }
    }
}

template <typename T, int HD>
void backward_impl(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse,
                   const Shape& sh) {
    const int hd = HD > 0 ? HD : sh.hd;
    const long row = sh.row();
    const long out_row = static_cast<long>(sh.H) * hd;
    const int group = sh.group();
    const int T_len = sh.T_len;
    const int nkt = (T_len + kTileK - 1) / kTileK;
    const T scale = T(1) / std::sqrt(static_cast<T>(hd));
    const long ntasks = static_cast<long>(sh.B) * sh.KV;

#pragma omp parallel
    {
        // D_i = rowsum(dout ⊙ out) for the group's query heads: linear in T, computed once.
        std::vector<T> Dbuf(static_cast<size_t>(group) * T_len);
        std::vector<T> buf(static_cast<size_t>(9 * kTileK * hd + 2 * kTileQ * kTileK));
        T* Kt = buf.data();         // hd × kTileK
        T* Vt = Kt + hd * kTileK;   // hd × kTileK
        T* Ks = Vt + hd * kTileK;   // kTileK × hd, pre-multiplied by 1/√hd (for dQ)
        T* dKt = Ks + kTileK * hd;  // hd × kTileK accumulators
        T* dVt = dKt + hd * kTileK;
        T* Q = dVt + hd * kTileK;   // kTileQ × hd, scaled as in the forward
        T* Qt = Q + kTileQ * hd;    // hd × kTileQ, scaled
        T* dO = Qt + hd * kTileQ;   // kTileQ × hd
        T* dOt = dO + kTileQ * hd;  // hd × kTileQ
        T* P = dOt + hd * kTileQ;   // kTileQ × kTileK
        T* dS = P + kTileQ * kTileK;

#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < ntasks; ++task) {
            const int g = static_cast<int>(task % sh.KV);
            const int b = static_cast<int>(task / sh.KV);
            const long bT = static_cast<long>(b) * T_len;
            const T* base = qkv + bT * row;
            T* dbase = dqkv + bT * row;

            for (int hh = 0; hh < group; ++hh) {
                const long col = static_cast<long>(g * group + hh) * hd;
                for (int t = 0; t < T_len; ++t) {
                    const T* o = out + (bT + t) * out_row + col;
                    const T* d_o = dout + (bT + t) * out_row + col;
                    T acc = 0;
                    for (int d = 0; d < hd; ++d) acc += o[d] * d_o[d];
                    Dbuf[static_cast<size_t>(hh) * T_len + t] = acc;
                }
            }

            for (int kt = 0; kt < nkt; ++kt) {
                const int k0 = kt * kTileK;
                const int nk = std::min(kTileK, T_len - k0);
                const long kcol = static_cast<long>(sh.H + g) * hd;
                const long vcol = static_cast<long>(sh.H + sh.KV + g) * hd;
                load_cols(Kt, base + kcol, row, k0, nk, kTileK, hd);
                load_cols(Vt, base + vcol, row, k0, nk, kTileK, hd);
                load_rows(Ks, base + kcol, row, k0, nk, kTileK, hd, scale);
                std::fill(dKt, dKt + hd * kTileK, T(0));
                std::fill(dVt, dVt + hd * kTileK, T(0));

                for (int hh = 0; hh < group; ++hh) {
                    const int h = g * group + hh;
                    const long qcol = static_cast<long>(h) * hd;
                    const T* lse_h = lse + (static_cast<long>(b) * sh.H + h) * T_len;
                    const T* D_h = Dbuf.data() + static_cast<size_t>(hh) * T_len;
                    // Query tiles before k0 see none of these keys.
                    for (int q0 = (k0 / kTileQ) * kTileQ; q0 < T_len; q0 += kTileQ) {
                        const int nq = std::min(kTileQ, T_len - q0);
                        load_rows(Q, base + qcol, row, q0, nq, kTileQ, hd, scale);
                        for (int i = 0; i < nq; ++i)
                            for (int d = 0; d < hd; ++d) Qt[d * kTileQ + i] = Q[i * hd + d];
                        for (int d = 0; d < hd; ++d)
                            std::fill(Qt + d * kTileQ + nq, Qt + (d + 1) * kTileQ, T(0));
                        for (int i = 0; i < nq; ++i) {
                            const T* s = dout + (bT + q0 + i) * out_row + qcol;
                            for (int d = 0; d < hd; ++d) {
                                dO[i * hd + d] = s[d];
                                dOt[d * kTileQ + i] = s[d];
                            }
                        }
                        for (int d = 0; d < hd; ++d)
                            std::fill(dOt + d * kTileQ + nq, dOt + (d + 1) * kTileQ, T(0));

                        // P = exp(S - lse), the forward's probabilities bit for bit: same
                        // scaled Q, same product, same exp.
                        mm_rows<T, kTileK, false>(P, kTileK, Q, hd, Kt, kTileK, nq, hd, kTileK);
                        causal_mask(P, q0, nq, k0);
                        // dP = dO · Vᵀ
                        mm_rows<T, kTileK, false>(dS, kTileK, dO, hd, Vt, kTileK, nq, hd, kTileK);
                        for (int i = 0; i < nq; ++i) {
                            T* p = P + i * kTileK;
                            T* ds = dS + i * kTileK;
                            const T L = lse_h[q0 + i];
                            const T Di = D_h[q0 + i];
                            for (int j = 0; j < kTileK; ++j) {
                                p[j] = exp_vec(p[j] - L);
                                ds[j] = p[j] * (ds[j] - Di);
                            }
                        }
                        for (int i = nq; i < kTileQ; ++i) {
                            std::fill(P + i * kTileK, P + (i + 1) * kTileK, T(0));
                            std::fill(dS + i * kTileK, dS + (i + 1) * kTileK, T(0));
                        }
                        // dVᵀ += dOᵀ · P, dKᵀ += (Q/√hd)ᵀ · dS, dQ += dS · K/√hd.
                        mm_rows<T, kTileK, true>(dVt, kTileK, dOt, kTileQ, P, kTileK, hd, kTileQ,
                                                 kTileK);
                        mm_rows<T, kTileK, true>(dKt, kTileK, Qt, kTileQ, dS, kTileK, hd, kTileQ,
                                                 kTileK);
                        mm_rows<T, HD, true>(dbase + q0 * row + qcol, row, dS, kTileK, Ks, hd, nq,
                                             nk, hd);
                    }
                }

                for (int j = 0; j < nk; ++j) {
                    T* dk = dbase + (k0 + j) * row + kcol;
                    T* dv = dbase + (k0 + j) * row + vcol;
                    for (int d = 0; d < hd; ++d) {
                        dk[d] += dKt[d * kTileK + j];
                        dv[d] += dVt[d * kTileK + j];
                    }
                }
            }
        }
    }
}

}  // namespace

template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, int B, int T_len, int H, int KV, int hd) {
    const Shape sh{B, T_len, H, KV, hd};
    switch (hd) {
        case 16:
            forward_impl<T, 16>(out, lse, qkv, sh);
            break;
        case 32:
            forward_impl<T, 32>(out, lse, qkv, sh);
            break;
        case 64:
            forward_impl<T, 64>(out, lse, qkv, sh);
            break;
        case 128:
            forward_impl<T, 128>(out, lse, qkv, sh);
            break;
        default:
            forward_impl<T, 0>(out, lse, qkv, sh);
            break;
    }
}

template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int B,
                        int T_len, int H, int KV, int hd) {
    const Shape sh{B, T_len, H, KV, hd};
    switch (hd) {
        case 16:
            backward_impl<T, 16>(dqkv, dout, qkv, out, lse, sh);
            break;
        case 32:
            backward_impl<T, 32>(dqkv, dout, qkv, out, lse, sh);
            break;
        case 64:
            backward_impl<T, 64>(dqkv, dout, qkv, out, lse, sh);
            break;
        case 128:
            backward_impl<T, 128>(dqkv, dout, qkv, out, lse, sh);
            break;
        default:
            backward_impl<T, 0>(dqkv, dout, qkv, out, lse, sh);
            break;
    }
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int, int);
template void attention_forward<double>(double*, double*, const double*, int, int, int, int, int);
template void attention_backward<float>(float*, const float*, const float*, const float*,
                                        const float*, int, int, int, int, int);
template void attention_backward<double>(double*, const double*, const double*, const double*,
                                         const double*, int, int, int, int, int);

}  // namespace agpt::cpu
