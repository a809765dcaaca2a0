#include "kernels/cpu/newton_schulz.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>

#include "core/error.h"
#include "kernels/cpu/gemm.h"

namespace agpt::cpu {

float round_to_bf16(float x) {
    uint32_t u = std::bit_cast<uint32_t>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::bit_cast<float>(u | 0x00400000u);  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::bit_cast<float>(u & 0xffff0000u);
}

namespace {

template <typename T>
void round_all(T* x, std::size_t n, bool round_bf16) {
    if constexpr (std::is_same_v<T, float>) {
        if (!round_bf16) return;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (std::size_t i = 0; i < n; ++i) x[i] = round_to_bf16(x[i]);
    } else {
        (void)x;
        (void)n;
        (void)round_bf16;
    }
}

template <typename T>
T maybe_bf16(T v, bool round_bf16) {
    if constexpr (std::is_same_v<T, float>) return round_bf16 ? round_to_bf16(v) : v;
    return v;
}

// Σ x² in double with independent lanes, so the sum vectorises without reassociation and never
// overflows for finite float inputs (at most 1.2e77 per term).
template <typename T>
double sum_squares(const T* x, std::size_t n) {
    constexpr std::size_t kLanes = 8;
    const std::size_t kBlock = 1 << 16;
    const std::size_t n_blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(n_blocks, 0.0);
#pragma omp parallel for schedule(static) if (n_blocks > 1)
    for (std::size_t b = 0; b < n_blocks; ++b) {
        const std::size_t begin = b * kBlock, end = std::min(n, begin + kBlock);
        double lane[kLanes] = {};
        std::size_t i = begin;
        for (; i + kLanes <= end; i += kLanes)
            for (std::size_t j = 0; j < kLanes; ++j) {
                const double v = static_cast<double>(x[i + j]);
                lane[j] += v * v;
            }
        for (std::size_t j = 0; i < end; ++i, ++j) {
            const double v = static_cast<double>(x[i]);
            lane[j] += v * v;
        }
        double s = 0.0;
        for (double l : lane) s += l;
        partial[b] = s;
    }
    double total = 0.0;
    for (double p : partial) total += p;
    return total;
}

}  // namespace

template <typename T>
void newton_schulz(const T* G, T* out, int rows, int cols, const NsCoefficients& coef, int steps,
                   double eps, bool round_bf16, NsScratch<T>& s) {
    if (rows <= 0 || cols <= 0) fail("newton_schulz: empty matrix {}x{}", rows, cols);
    if (steps < 0 || steps >= 100) fail("newton_schulz: steps must be in [0, 100), got {}", steps);
    const bool tall = rows > cols;
    const int r = tall ? cols : rows;  // X is (r, c) with r <= c
    const int c = tall ? rows : cols;
    const std::size_t n = static_cast<std::size_t>(r) * c;
    s.x.resize(n);
    s.y.resize(n);
    s.gram.resize(static_cast<std::size_t>(r) * r);
    s.poly.resize(static_cast<std::size_t>(r) * r);

    // torch rounds the input to bf16 before taking its norm; the norm itself comes out as bf16.
    double norm;
    if (round_bf16) {
        double acc = 0.0;
        std::vector<double> partial(static_cast<std::size_t>(rows), 0.0);
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int i = 0; i < rows; ++i) {
            double lane = 0.0;
            for (int j = 0; j < cols; ++j) {
                const double v = static_cast<double>(
                    maybe_bf16(G[static_cast<std::size_t>(i) * cols + j], true));
                lane += v * v;
            }
            partial[static_cast<std::size_t>(i)] = lane;
        }
        for (double p : partial) acc += p;
        norm = std::sqrt(acc);
        // Round the norm as torch does, unless that would overflow bf16's range (torch would
        // divide by inf there and return zeros).
        const double rounded = static_cast<double>(round_to_bf16(static_cast<float>(norm)));
        if (std::isfinite(rounded)) norm = rounded;
    } else {
        norm = std::sqrt(sum_squares(G, n));
    }
    const double eps_t =
        round_bf16 ? static_cast<double>(round_to_bf16(static_cast<float>(eps))) : eps;
    const double inv = 1.0 / std::max(norm, eps_t);
    T* x = s.x.data();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j) {
            const T g = maybe_bf16(G[static_cast<std::size_t>(i) * cols + j], round_bf16);
            const T v = maybe_bf16(static_cast<T>(static_cast<double>(g) * inv), round_bf16);
            if (tall)
                x[static_cast<std::size_t>(j) * c + i] = v;
            else
                x[static_cast<std::size_t>(i) * c + j] = v;
        }

    T* y = s.y.data();
    T* gram = s.gram.data();
    T* poly = s.poly.data();
    const T a = static_cast<T>(coef.a), b = static_cast<T>(coef.b), cc = static_cast<T>(coef.c);
    const std::size_t rr = static_cast<std::size_t>(r) * r;
    for (int it = 0; it < steps; ++it) {
        // A = X·Xᵀ
        gemm<T>(false, true, r, r, c, T(1), x, c, x, c, T(0), gram, r);
        round_all(gram, rr, round_bf16);
        // B = b·A + c·A·A (one rounding, as torch.addmm)
        std::copy(gram, gram + rr, poly);
        gemm<T>(false, false, r, r, r, cc, gram, r, gram, r, b, poly, r);
        round_all(poly, rr, round_bf16);
        // X = a·X + B·X
        std::copy(x, x + n, y);
        gemm<T>(false, false, r, c, r, T(1), poly, r, x, c, a, y, c);
        round_all(y, n, round_bf16);
        std::swap(x, y);
    }

    if (tall) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int i = 0; i < rows; ++i)
            for (int j = 0; j < cols; ++j)
                out[static_cast<std::size_t>(i) * cols + j] =
                    x[static_cast<std::size_t>(j) * c + i];
    } else {
        std::copy(x, x + n, out);
    }
}

template void newton_schulz<float>(const float*, float*, int, int, const NsCoefficients&, int,
                                   double, bool, NsScratch<float>&);
template void newton_schulz<double>(const double*, double*, int, int, const NsCoefficients&, int,
                                    double, bool, NsScratch<double>&);

}  // namespace agpt::cpu
