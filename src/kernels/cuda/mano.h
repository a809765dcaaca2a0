#pragma once
// Mano's matrix step on the GPU (optim/mano.cpp's arithmetic): per slice — a row (axis 1) or a
// column (axis 0) of W — the momentum buf = μ·buf + g, the direction m (nesterov: g + μ·buf),
// Σ W², Σ m·W, Σ m² in double, κ (v1: ⟨m, W/d⟩/d with d = max(‖W‖, eps); v2: Σ m·W), the tangent
// T = m − κ·W and W = W·decay − scale/‖T‖·T (v1: max(‖T‖, eps), v2: ‖T‖ + eps). ‖T‖² comes from
// the sums; when they cancel (T nearly 0 against m) a sweep computes it, as on the CPU. Sums run
// in fixed orders (a row: a block's fixed tree; a column: blocks of 64 rows, then the blocks in
// order), so the result does not depend on timing.
#include <cstddef>

#include "kernels/cuda/device.h"

namespace agpt::cuda {

struct ManoStep {
    float momentum;
    bool v2;
    bool nesterov;
    double eps;
    float decay;   // 1 − lr·wd
    double scale;  // lr·0.2·√(slice length)
};

// Bytes of scratch mano_update needs for an (R, C) matrix (column sums and coefficients).
std::size_t mano_scratch_bytes(int R, int C);

// W, G, buf (R, C, fp32); W_bf16, when not null, receives the updated W rounded to bf16.
void mano_update(float* W, const float* G, float* buf, int R, int C, int axis, const ManoStep& s,
                 bf16* W_bf16, void* scratch, cudaStream_t stream);

}  // namespace agpt::cuda
