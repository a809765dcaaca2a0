#pragma once
#include <cstdint>
// Token embedding lookup.
namespace agpt::cpu {

// tokens (N) in [0,V), table (V,C) -> out (N,C).
template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int N, int C);

// Accumulates dtable (V,C). Deterministic: each table row is summed in token order.
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* tokens, int N, int C);

// Vocabulary-parallel forms: table holds rows [first, first + rows) of the full table only;
// tokens outside that range give zero rows (forward) and no gradient (backward).
template <typename T>
void embedding_forward_rows(T* out, const int32_t* tokens, const T* table, int N, int C, int first,
                            int rows);
template <typename T>
void embedding_backward_rows(T* dtable, const T* dout, const int32_t* tokens, int N, int C,
                             int first, int rows);

}  // namespace agpt::cpu
