#pragma once
// Dispatch and combine of a mixture-of-experts layer: the N·k (token, expert) assignments are
// sorted by expert (a stable counting sort), so that each expert's tokens form one contiguous
// block of rows; the experts then run as grouped GEMMs, one BLAS call per expert over its block,
// and the results are scattered back to their tokens weighted by the gates.
//
// Intended use (x (N,D), experts/gates (N,k) from router_forward):
//   MoePlan plan;  moe_plan(plan, experts, N, k, E);
//   moe_gather(xs, x, plan, D);                             // xs (N·k, D), sorted by expert
//   grouped_matmul_forward(h, xs, w1, plan, D, F);         // h (N·k, F), expert e: xs_e · w1[e]ᵀ
//   ...
//   moe_combine(out, ys, gates, plan, N, k, D);             // out (N,D) += Σ_j gate_j · y_j
namespace agpt::cpu {

struct MoePlan {
    int n_experts = 0;
    // Rows [offsets[e], offsets[e+1]) of the sorted (N·k) buffers belong to expert e.
    int* offsets = nullptr;  // (E+1)
    // Sorted row r holds token row_token[r]; assignment n·k+j (token n's j-th expert) sits at
    // sorted row slot_row[n·k+j].
    int* row_token = nullptr;  // (N·k)
    int* slot_row = nullptr;   // (N·k)
};

// Fills plan (whose arrays the caller owns) from experts (N,k). Within an expert, rows keep
// token order.
void moe_plan(MoePlan& plan, const int* experts, int N, int k, int E);

// xs (N·k, D): row r = x[row_token[r]].
template <typename T>
void moe_gather(T* xs, const T* x, const MoePlan& plan, int N, int k, int D);
// Accumulates dx (N,D) += Σ over token n's rows of dxs; each token sums its k rows in slot order.
template <typename T>
void moe_gather_backward(T* dx, const T* dxs, const MoePlan& plan, int N, int k, int D);

// For each expert e: out rows of e (M_e, OC) = inp rows of e (M_e, C) · weight[e] (OC, C)ᵀ,
// written into columns [0, OC) of rows of stride ldo (ldo >= OC).
template <typename T>
void grouped_matmul_forward(T* out, int ldo, const T* inp, const T* weight, const MoePlan& plan,
                            int C, int OC);
// Accumulates dinp (rows of C) and dweight (E, OC, C) from dout (rows of stride ldo); either may
// be null. Experts without tokens get no update.
template <typename T>
void grouped_matmul_backward(T* dinp, T* dweight, const T* dout, int ldo, const T* inp,
                             const T* weight, const MoePlan& plan, int C, int OC);

// out (N,D) += Σ_j gates[n·k+j] · ys[slot_row[n·k+j]].
template <typename T>
void moe_combine(T* out, const T* ys, const T* gates, const MoePlan& plan, int N, int k, int D);
// dys (N·k, D) = gate · dout (overwritten); dgates (N,k) += dout · y (either may be null).
template <typename T>
void moe_combine_backward(T* dys, T* dgates, const T* dout, const T* ys, const T* gates,
                          const MoePlan& plan, int N, int k, int D);

}  // namespace agpt::cpu
