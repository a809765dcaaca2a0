#pragma once
// A vector added to every row of a matrix (the bias of a linear layer; GPT-2's position
// embeddings are one too: wpe (T,C) seen as one T·C vector added to each of B sequences) and
// the gradient of that: the sum of the rows.
namespace agpt::cpu {

// out (N,OC): each row += bias (OC), or = bias when accumulate is false.
template <typename T>
void bias_forward(T* out, const T* bias, int N, int OC, bool accumulate = true);

// Accumulates dbias (OC) += Σ_rows dout (N,OC). Deterministic: threads own column slices and
// add the rows in order.
template <typename T>
void bias_backward(T* dbias, const T* dout, int N, int OC);

}  // namespace agpt::cpu
