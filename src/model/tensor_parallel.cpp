#include "model/tensor_parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/softcap.h"
#include "kernels/cpu/vec_math.h"
#include "optim/grad_clip.h"

namespace agpt {

using namespace agpt::cpu;

std::pair<int, int> vocab_range(int V, int rank, int n) {
    const int base = V / n, longer = V % n;
    return {rank * base + std::min(rank, longer), base + (rank < longer ? 1 : 0)};
}

std::size_t ShardSpec::local_numel() const {
    switch (split) {
        case Split::rows:
            return static_cast<std::size_t>(count) * cols;
        case Split::columns:
            return static_cast<std::size_t>(rows) * count;
        case Split::replicated:
            break;
    }
    return full_numel();
}

std::vector<int> ShardSpec::full_shape(const std::vector<int>& local_shape) const {
    std::vector<int> shape = local_shape;
    if (split == Split::rows) shape.front() = rows;
    if (split == Split::columns) shape.back() = cols;
    return shape;
}

namespace {

// Copies the block of `rows` × `count` columns starting at column `first` between a full
// (rows, cols) matrix and a packed (rows, count) one.
void copy_columns(const float* from, float* to, int rows, int cols, int first, int count,
                  bool into_full) {
    for (int r = 0; r < rows; r++) {
        const std::size_t full_at = static_cast<std::size_t>(r) * cols + first,
                          packed_at = static_cast<std::size_t>(r) * count;
        if (into_full)
            std::memcpy(to + full_at, from + packed_at, sizeof(float) * count);
        else
            std::memcpy(to + packed_at, from + full_at, sizeof(float) * count);
    }
}

}  // namespace

void take_shard(const ShardSpec& s, const float* full, float* local) {
    switch (s.split) {
        case ShardSpec::Split::replicated:
            std::memcpy(local, full, sizeof(float) * s.full_numel());
            return;
        case ShardSpec::Split::rows:
            std::memcpy(local, full + static_cast<std::size_t>(s.first) * s.cols,
                        sizeof(float) * s.local_numel());
            return;
        case ShardSpec::Split::columns:
            copy_columns(full, local, s.rows, s.cols, s.first, s.count, false);
            return;
    }
}

void gather_shard(const ShardSpec& s, const float* local, float* full, const TensorParallel& tp) {
    if (s.split == ShardSpec::Split::replicated || !tp.active()) {
        std::memcpy(full, local, sizeof(float) * s.local_numel());
        return;
    }
    const bool by_rows = s.split == ShardSpec::Split::rows;
    const int along = by_rows ? s.rows : s.cols, across = by_rows ? s.cols : s.rows;
    // all_gather takes equal counts: every block is padded to the longest range.
    const std::size_t block =
        static_cast<std::size_t>((along + tp.degree - 1) / tp.degree) * across;
    std::vector<float> send(block, 0.0f), all(block * tp.degree);
    std::memcpy(send.data(), local, sizeof(float) * s.local_numel());
    tp.group->all_gather(send.data(), all.data(), block);
    for (int q = 0; q < tp.degree; q++) {
        const auto [first, count] = vocab_range(along, q, tp.degree);
        const float* from = all.data() + block * q;
        if (by_rows)
            std::memcpy(full + static_cast<std::size_t>(first) * s.cols, from,
                        sizeof(float) * count * s.cols);
        else
            copy_columns(from, full, s.rows, s.cols, first, count, true);
    }
}

void gather_vocab_columns(const float* local, float* out, int N, int V, const TensorParallel& tp) {
    ShardSpec s;
    s.split = ShardSpec::Split::columns;
    s.rows = N;
    s.cols = V;
    std::tie(s.first, s.count) = vocab_range(V, tp.rank, tp.degree);
    gather_shard(s, local, out, tp);
}

double vocab_parallel_cross_entropy(float* dx, float* dweight, const float* x, const float* weight,
                                    const int32_t* targets, int N, int C, int vocab_first,
                                    int vocab_rows, float grad_scale_all, float* scratch, int chunk,
                                    float softcap, const float* row_scale, double* row_loss_out,
                                    const TensorParallel& tp) {
    const bool backward = dx != nullptr || dweight != nullptr;
    const bool capped = softcap > 0.0f;
    const int Vl = vocab_rows;
    auto local_target = [&](int32_t t) {
        return t >= vocab_first && t < vocab_first + Vl ? t - vocab_first : -1;
    };
    std::vector<double> row_loss(N, 0.0);
    std::vector<float> row_max(chunk);
    std::vector<double> sums(2 * static_cast<std::size_t>(chunk));  // Σexp | target logit
    if (dx) std::fill(dx, dx + static_cast<std::size_t>(N) * C, 0.0f);
    for (int start = 0; start < N; start += chunk) {
        const int n = std::min(chunk, N - start);
        const float* xc = x + static_cast<long>(start) * C;
        float* logits = scratch;  // (n, Vl)
        gemm<float>(false, true, n, Vl, C, 1.0f, xc, C, weight, C, 0.0f, logits, Vl);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            float* row = logits + static_cast<long>(i) * Vl;
            if (capped)
                for (int v = 0; v < Vl; v++) row[v] = softcap_vec(row[v], softcap);
            float maxv = -std::numeric_limits<float>::infinity();
            for (int v = 0; v < Vl; v++) maxv = std::max(maxv, row[v]);
            row_max[i] = maxv;
        }
        tp.group->all_reduce(row_max.data(), n, ReduceOp::Max);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            const float* row = logits + static_cast<long>(i) * Vl;
            float sum = 0.0f;
            for (int v = 0; v < Vl; v++) sum += exp_vec(row[v] - row_max[i]);
            const int t = local_target(targets[start + i]);
            sums[i] = sum;
            sums[n + i] = t >= 0 ? row[t] : 0.0;
        }
        tp.group->all_reduce(sums.data(), 2 * static_cast<std::size_t>(n), ReduceOp::Sum);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            const int32_t target = targets[start + i];
            if (target >= 0)
                row_loss[start + i] =
                    std::log(sums[i]) + static_cast<double>(row_max[i]) - sums[n + i];
            if (!backward) continue;
            // dlogits = grad_scale · (softmax − onehot) (· dy/dz when capped); ignored rows 0.
            float* row = logits + static_cast<long>(i) * Vl;
            const float grad_scale =
                row_scale ? grad_scale_all * row_scale[start + i] : grad_scale_all;
            const float scale = target >= 0 ? grad_scale / static_cast<float>(sums[i]) : 0.0f;
            const int t = local_target(target);
            for (int v = 0; v < Vl; v++) {
                const float p = exp_vec(row[v] - row_max[i]) * scale;
                row[v] = capped ? p * softcap_grad_from_output(row[v], softcap) : p;
            }
            if (t >= 0) {
                const float y = static_cast<float>(sums[n + i]);
                row[t] -= capped ? grad_scale * softcap_grad_from_output(y, softcap) : grad_scale;
            }
        }
        if (dx)
            gemm<float>(false, false, n, C, Vl, 1.0f, logits, Vl, weight, C, 1.0f,
                        dx + static_cast<long>(start) * C, C);
        if (dweight) gemm<float>(true, false, Vl, C, n, 1.0f, logits, Vl, xc, C, 1.0f, dweight, C);
    }
    if (dx) tp.group->all_reduce(dx, static_cast<std::size_t>(N) * C, ReduceOp::Sum);
    double total = 0.0;  // summed in token order for a thread-count independent result
    for (double l : row_loss) total += l;
    if (row_loss_out) std::copy(row_loss.begin(), row_loss.end(), row_loss_out);
    return total;
}

double clip_tensor_parallel_grad_norm(float* grads, const std::vector<ParamView>& views,
                                      const std::vector<ShardSpec>& shards, double max_norm,
                                      const TensorParallel& tp) {
    double sums[2] = {0.0, 0.0};  // sharded, replicated
    for (std::size_t i = 0; i < views.size(); i++) {
        const double norm = global_grad_norm(grads + views[i].offset, views[i].numel());
        sums[shards[i].split == ShardSpec::Split::replicated ? 1 : 0] += norm * norm;
    }
    if (tp.active()) tp.group->all_reduce(sums, 1, ReduceOp::Sum);
    const double norm = std::sqrt(sums[0] + sums[1]);
    if (!(max_norm > 0.0)) return norm;
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    const float c = static_cast<float>(coef);
    for (const ParamView& v : views)
        for (std::size_t i = v.offset; i < v.offset + v.numel(); i++) grads[i] *= c;
    return norm;
}

}  // namespace agpt
