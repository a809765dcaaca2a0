#pragma once
// Rotary position embedding in Hugging Face Llama's layout ("rotate_half"): within a head of
// size hd, element i (< hd/2) is paired with element i + hd/2 and the pair is rotated by
// angle pos · theta^(-2i/hd). Exported weights therefore need no q/k row permutation.
namespace agpt::cpu {

// cos/sin tables (T, hd/2): angle(t, i) = t · theta^(-2i/hd).
template <typename T>
void rope_tables(T* cos_table, T* sin_table, int T_len, int hd, double theta);

// Rotates, in place, the first n_heads heads of each row of x (B·T rows of row_stride elements,
// row b·T+t at position t). Used on the q and k heads at the start of each fused qkv row.
template <typename T>
void rope_forward(T* x, const T* cos_table, const T* sin_table, int B, int T_len, int n_heads,
                  int hd, int row_stride);

// Backward of a rotation is the inverse rotation; applied in place to dx.
template <typename T>
void rope_backward(T* dx, const T* cos_table, const T* sin_table, int B, int T_len, int n_heads,
                   int hd, int row_stride);

}  // namespace agpt::cpu
