#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/softcap.h"
#include "kernels/cpu/vec_math.h"

namespace agpt::cpu {

template <typename T>
double lm_head_cross_entropy(T* dx, T* dweight, const T* x, const T* weight, const int32_t* targets,
                             int N, int C, int V, T grad_scale_all, T* scratch, int chunk,
                             T softcap, const T* row_scale, double* row_loss_out) {
    const bool backward = dx != nullptr || dweight != nullptr;
    const bool capped = softcap > T(0);
    std::vector<double> row_loss(N, 0.0);
    for (int start = 0; start < N; start += chunk) {
        const int n = std::min(chunk, N - start);
        const T* xc = x + static_cast<long>(start) * C;
        T* logits = scratch;  // (n, V)
        gemm<T>(false, true, n, V, C, T(1), xc, C, weight, C, T(0), logits, V);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            T* row = logits + static_cast<long>(i) * V;
            const int32_t target = targets[start + i];
            const T grad_scale = row_scale ? grad_scale_all * row_scale[start + i] : grad_scale_all;
            if (capped) {  // the loss is that of the capped logits y = c·tanh(z/c)
#pragma omp simd
                for (int v = 0; v < V; v++) row[v] = softcap_vec(row[v], softcap);
            }
            const T target_logit = target >= 0 ? row[target] : T(0);
            T maxv = row[0];
#pragma omp simd reduction(max : maxv)
            for (int v = 1; v < V; v++) maxv = std::max(maxv, row[v]);
            T sum = 0;
            if (capped && backward) {
                // The backward needs y (for dy/dz = 1 − (y/c)²) after the sum: keep y in the
                // row and compute exp twice rather than hold a second (chunk, V) buffer.
#pragma omp simd reduction(+ : sum)
                for (int v = 0; v < V; v++) sum += exp_vec(row[v] - maxv);
            } else {
                // Keep exp(logit − max) in the row: backward turns it into probabilities.
#pragma omp simd reduction(+ : sum)
                for (int v = 0; v < V; v++) {
                    row[v] = exp_vec(row[v] - maxv);
                    sum += row[v];
                }
            }
            if (target >= 0)
                row_loss[start + i] = std::log(static_cast<double>(sum)) +
                                      static_cast<double>(maxv) - static_cast<double>(target_logit);
            if (!backward) continue;
            // Row becomes dlogits = grad_scale · (softmax − onehot) (· dy/dz when capped);
            // ignored rows contribute 0.
            const T scale = target >= 0 ? grad_scale / sum : T(0);
            if (capped) {
                const T target_grad =
                    target >= 0 ? softcap_grad_from_output(target_logit, softcap) : T(0);
#pragma omp simd
                for (int v = 0; v < V; v++)
                    row[v] =
                        exp_vec(row[v] - maxv) * scale * softcap_grad_from_output(row[v], softcap);
                if (target >= 0) row[target] -= grad_scale * target_grad;
            } else {
#pragma omp simd
                for (int v = 0; v < V; v++) row[v] *= scale;
                if (target >= 0) row[target] -= grad_scale;
            }
        }
        if (dx)
            gemm<T>(false, false, n, C, V, T(1), logits, V, weight, C, T(1),
                    dx + static_cast<long>(start) * C, C);
        if (dweight) gemm<T>(true, false, V, C, n, T(1), logits, V, xc, C, T(1), dweight, C);
    }
    double total = 0.0;  // summed in token order for a thread-count independent result
    for (double l : row_loss) total += l;
    if (row_loss_out) std::copy(row_loss.begin(), row_loss.end(), row_loss_out);
    return total;
}

template double lm_head_cross_entropy<float>(float*, float*, const float*, const float*,
                                             const int32_t*, int, int, int, float, float*, int,
                                             float, const float*, double*);
template double lm_head_cross_entropy<double>(double*, double*, const double*, const double*,
                                              const int32_t*, int, int, int, double, double*, int,
                                              double, const double*, double*);

}  // namespace agpt::cpu
