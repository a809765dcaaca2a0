#include "kernels/cpu/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace agpt::cpu {

const char* router_score_name(RouterScore s) {
    return s == RouterScore::sigmoid ? "sigmoid" : "softmax";
}

namespace {

// torchtitan's guard against a zero denominator when renormalising sigmoid gates.
constexpr double kRouteNormEps = 1e-20;

// dz (E) += d(score function) from ds (E): softmax or sigmoid, s (E) its output.
template <typename T>
void scores_backward_row(T* dz, const T* ds, const T* s, int E, RouterScore score) {
    if (score == RouterScore::softmax) {
        T dot = 0;
        for (int e = 0; e < E; e++) dot += ds[e] * s[e];
        for (int e = 0; e < E; e++) dz[e] += s[e] * (ds[e] - dot);
    } else {
        for (int e = 0; e < E; e++) dz[e] += ds[e] * s[e] * (T(1) - s[e]);
    }
}

}  // namespace

template <typename T>
void router_forward(int* experts, T* gates, T* scores, const T* logits, const float* expert_bias,
                    int N, int E, int k, const RouterOptions& opt) {
#pragma omp parallel
    {
        std::vector<int> order(E);
        std::vector<T> biased(E);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const T* z = logits + static_cast<long>(n) * E;
            T* s = scores + static_cast<long>(n) * E;
            if (opt.score == RouterScore::softmax) {
                const T zmax = *std::max_element(z, z + E);
                T sum = 0;
                for (int e = 0; e < E; e++) sum += s[e] = std::exp(z[e] - zmax);
                for (int e = 0; e < E; e++) s[e] /= sum;
            } else {
                for (int e = 0; e < E; e++) s[e] = T(1) / (T(1) + std::exp(-z[e]));
            }
            for (int e = 0; e < E; e++)
                biased[e] = s[e] + (expert_bias ? static_cast<T>(expert_bias[e]) : T(0));
            std::iota(order.begin(), order.end(), 0);
            std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
                return biased[a] > biased[b] || (biased[a] == biased[b] && a < b);
            });
            int* chosen = experts + static_cast<long>(n) * k;
            T* g = gates + static_cast<long>(n) * k;
            T sum = 0;
            for (int j = 0; j < k; j++) {
                chosen[j] = order[j];
                sum += g[j] = s[order[j]];
            }
            const T factor = static_cast<T>(opt.route_scale) /
                             (opt.route_norm ? sum + static_cast<T>(kRouteNormEps) : T(1));
            for (int j = 0; j < k; j++) g[j] *= factor;
        }
    }
}

template <typename T>
void router_backward(T* dlogits, const T* dgates, const T* scores, const int* experts, int N, int E,
                     int k, const RouterOptions& opt) {
#pragma omp parallel
    {
        std::vector<T> ds(E);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const T* s = scores + static_cast<long>(n) * E;
            const int* chosen = experts + static_cast<long>(n) * k;
            const T* dg = dgates + static_cast<long>(n) * k;
            std::fill(ds.begin(), ds.end(), T(0));
            const T scale = static_cast<T>(opt.route_scale);
            if (opt.route_norm) {
                // g_j = scale · s_j / S with S = Σ_m s_m + eps over the chosen experts:
                // ∂L/∂s_j = scale · (dg_j − Σ_m dg_m s_m / S) / S.
                T sum = 0, dot = 0;
                for (int j = 0; j < k; j++) {
                    sum += s[chosen[j]];
                    dot += dg[j] * s[chosen[j]];
                }
                sum += static_cast<T>(kRouteNormEps);
                for (int j = 0; j < k; j++) ds[chosen[j]] = scale * (dg[j] - dot / sum) / sum;
            } else {
                for (int j = 0; j < k; j++) ds[chosen[j]] = scale * dg[j];
            }
            scores_backward_row(dlogits + static_cast<long>(n) * E, ds.data(), s, E, opt.score);
        }
    }
}

template <typename T>
void router_scores_backward(T* dlogits, const T* dscores, const T* scores, int N, int E,
                            RouterScore score) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        scores_backward_row(dlogits + static_cast<long>(n) * E, dscores + static_cast<long>(n) * E,
                            scores + static_cast<long>(n) * E, E, score);
}

template void router_forward<float>(int*, float*, float*, const float*, const float*, int, int, int,
                                    const RouterOptions&);
template void router_forward<double>(int*, double*, double*, const double*, const float*, int, int,
                                     int, const RouterOptions&);
template void router_backward<float>(float*, const float*, const float*, const int*, int, int, int,
                                     const RouterOptions&);
template void router_backward<double>(double*, const double*, const double*, const int*, int, int,
                                      int, const RouterOptions&);
template void router_scores_backward<float>(float*, const float*, const float*, int, int,
                                            RouterScore);
template void router_scores_backward<double>(double*, const double*, const double*, int, int,
                                             RouterScore);

}  // namespace agpt::cpu
