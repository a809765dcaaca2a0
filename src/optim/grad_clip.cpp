#include "optim/grad_clip.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace agpt {
namespace {

// Independent accumulators let the compiler vectorise the sum without reassociating it: lane j
// always holds elements j, j + kLanes, ... of the block, whoever computes it.
constexpr std::size_t kLanes = 16;
static_assert(kGradNormBlock % kLanes == 0);

double block_sum_of_squares(const float* g, std::size_t len) {
    double lane[kLanes] = {};
    std::size_t i = 0;
    for (; i + kLanes <= len; i += kLanes) {
        for (std::size_t j = 0; j < kLanes; ++j) {
            const double x = g[i + j];
            lane[j] += x * x;
        }
    }
    for (std::size_t j = 0; i < len; ++i, ++j) {
        const double x = g[i];
        lane[j] += x * x;
    }
    double total = 0.0;
    for (std::size_t j = 0; j < kLanes; ++j) total += lane[j];
    return total;
}

}  // namespace

double global_grad_norm(const float* g, std::size_t n) {
    const std::size_t n_blocks = (n + kGradNormBlock - 1) / kGradNormBlock;
    std::vector<double> partial(n_blocks);
#pragma omp parallel for schedule(static)
    for (std::size_t b = 0; b < n_blocks; ++b) {
        const std::size_t begin = b * kGradNormBlock;
        const std::size_t len = std::min(kGradNormBlock, n - begin);
        partial[b] = block_sum_of_squares(g + begin, len);
    }
    double total = 0.0;
    for (double p : partial) total += p;
    return std::sqrt(total);
}

double clip_grad_norm(float* g, std::size_t n, double max_norm) {
    const double norm = global_grad_norm(g, n);
    clip_to_norm(g, n, norm, max_norm);
    return norm;
}

void clip_to_norm(float* g, std::size_t n, double norm, double max_norm) {
    if (!(max_norm > 0.0)) return;
    const double coef = max_norm / (norm + 1e-6);
    // torch clamps the coefficient to 1 and always multiplies; multiplying by 1 is the identity,
    // so only a coefficient below 1 (or NaN, which torch also applies) touches the gradients.
    if (coef >= 1.0) return;
    // torch multiplies float gradients by a float32 coefficient.
    const float c = static_cast<float>(coef);
#pragma omp parallel for schedule(static)
    for (std::size_t i = 0; i < n; ++i) g[i] *= c;
}

}  // namespace agpt
