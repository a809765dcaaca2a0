#pragma once
// Mano (Gu & Xie, arXiv 2601.23000), v1 and v2 as in the authors' repository
// (xie-lab-ml/Mano-Restriking-Manifold-Optimization-for-LLM-Training, mano.py and mano_v2.py),
// for the 2-D hidden weights; every other parameter goes to an AdamW with the
// [optimizer.adamw] keys.
//
// Per hidden matrix W (R × C) at step t (0-based), with k = t mod 2 the axis the slices run
// along (k = 0: columns, each of length n = R; k = 1: rows, n = C):
//   buf = momentum·buf + g;   m = nesterov ? g + momentum·buf : buf
//   v1: Ŵ = W / max(‖W‖_k, eps) per slice;  T = m − ⟨m, Ŵ⟩_k Ŵ;  U = T / max(‖T‖_k, eps)
//   v2:                                      T = m − ⟨m, W⟩_k W;  U = T / (‖T‖_k + eps)
//   W *= 1 − lr·weight_decay;   W -= lr·0.2·√n · U
// Each slice of U has unit norm, so the update's RMS is exactly 0.2·lr, and (v1) each slice is
// orthogonal to the normalised weight slice.
//
// The kernel makes two sweeps instead of the reference's three (‖T‖ follows from the first
// sweep's sums unless T nearly cancels), and normalises rows in cache and columns by streaming
// rows, so W, g and buf are read from memory once for all but very large matrices (mano.cpp).
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo mano_info();

struct ManoConfig {
    double lr = 0.0, weight_decay = 0.0, eps = 0.0, momentum = 0.0;
    bool v2 = false;        // version = 2
    bool nesterov = false;  // nesterov = auto resolved by the version
};
// The keys of mano_info() from checked hyper-parameters, validated (lr >= 0, eps > 0).
ManoConfig mano_config_from(const Hyper& h);

}  // namespace agpt
