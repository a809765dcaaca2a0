#pragma once
// Newton–Schulz orthogonalisation as torch.optim.Muon computes it: X = G / max(‖G‖_F, eps), on
// Gᵀ when G is tall (so the Gram matrix X·Xᵀ is the smaller one), then `steps` iterations of
//   A = X·Xᵀ;  B = b·A + c·A·A;  X = a·X + B·X
// with the quintic coefficients (a, b, c) = (3.4445, −4.775, 2.0315) by default. The result has
// singular values near 1 (roughly in [0.7, 1.2]) and G's singular vectors.
//
// Precision: fp32 and fp64 compute every product in that type. bf16 emulates torch, which runs
// the whole iteration in bfloat16: the input, the norm, the scaled matrix and every GEMM result
// are rounded to bf16 (round to nearest even); GEMMs accumulate in fp32 as torch's CPU and GPU
// kernels do.
//
// Overflow: the Frobenius norm is accumulated in double from the input, and the scaling divides
// in double, so any finite gradient — 1e30 entries in a 9216-wide matrix included — becomes a
// matrix of Frobenius norm ≤ 1; every iterate then stays bounded whatever the matrix size.
#include <vector>

namespace agpt::cpu {

struct NsCoefficients {
    double a = 3.4445;
    double b = -4.775;
    double c = 2.0315;
};

// Buffers reused across calls (sized on demand).
template <typename T>
struct NsScratch {
    std::vector<T> x, y, gram, poly;
};

// out (rows, cols) = NS(G (rows, cols)); out may alias G. round_bf16 is only meaningful for
// T = float.
template <typename T>
void newton_schulz(const T* G, T* out, int rows, int cols, const NsCoefficients& coef, int steps,
                   double eps, bool round_bf16, NsScratch<T>& scratch);

// x rounded to the nearest bfloat16 (ties to even), returned as a float; NaN stays NaN.
float round_to_bf16(float x);

}  // namespace agpt::cpu
