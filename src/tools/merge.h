#pragma once
// `agpt merge`: weighted averaging of checkpoints (fp64 accumulation), including WSM
// (arXiv 2507.17634), which emulates a learning-rate decay by merging checkpoints of a
// constant-LR run.
//
// Why merging emulates decay: with a constant LR, θ_j = θ_0 − η Σ_{i<=j} g_i, so
// Σ_j c_j θ_j = θ_0 − η Σ_i w_i g_i with w_i = Σ_{j>=i} c_j. A decay f on [0,1] (f(0) = 1,
// f(1) = 0) over the k segments between N = k+1 checkpoints asks for w_i = f(i/(k+1)),
// i = 1..k, hence c_0 = 1 − w_1, c_j = w_j − w_{j+1}, c_k = w_k. Linear decay gives the
// uniform average.
#include <string>
#include <vector>

namespace agpt {

// Merge coefficients for N checkpoints emulating `decay` (linear, cosine or 1-sqrt); they are
// non-negative and sum to 1.
std::vector<double> wsm_weights(const std::string& decay, int n_checkpoints);

// Writes sum_j weights[j] · checkpoint_j into out_dir as a model-only checkpoint step folder
// (usable as checkpoint.initial_load_path). Every input is verified; all must hold the same
// tensor names and shapes and the same [model] config. Weights must sum to 1 (checked within
// 1e-6). Refuses an existing out_dir.
void merge_checkpoints(const std::vector<std::string>& checkpoint_dirs,
                       const std::vector<double>& weights, const std::string& out_dir);

}  // namespace agpt
