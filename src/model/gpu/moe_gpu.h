#pragma once
// The mixture-of-experts FFN (model/moe.h's MoeFfn) on one CUDA device, on device pointers:
// router logits by GEMM, scores, biased top-k and gates (kernels/cuda/router.h), the tokens sorted
// by expert with the CPU's order (kernels/cuda/moe_dispatch.h), each routed expert's SwiGLU as
// GEMMs over its contiguous rows, the gated combine and the shared experts; backward for all of
// it, the sequence-level balance loss when aux_loss_alpha > 0, per-expert loads on the device.
//
// Precision: weights and activations of type T (fp32, or bf16 with fp32 accumulation); router
// logits, scores and gates in fp32; gradients fp32 (MoeGrads<float>, accumulated, as the GPU
// model's flat gradient buffer). Weight gradients come from fixed sequences of cuBLASLt calls and
// fixed-order kernels, so a step is deterministic.
//
// The grouped GEMMs run one cuBLASLt call per expert with rows, which needs the per-expert row
// offsets on the host: forward copies them back once (E+1 ints; it synchronises the stream
// there), backward reuses them.
//
// Compiled only with the CUDA backend (AGPT_HAVE_CUDA). Intended use (all pointers on the
// device, blas's stream):
//   MoeFfnGpu<bf16> moe(shape, max_tokens, blas);
//   moe.forward(out, x, weights, N, /*count_load=*/true, seq_len);   // out (N,D) += MoE(x)
//   moe.backward(dx, grads, dout, x, weights, N, aux_weight);        // after that forward
//   moe.tokens_per_expert();                                         // host copy of the load
#include <cstddef>
#include <vector>

#include "kernels/cuda/device.h"
#include "model/moe.h"

namespace agpt {

template <typename T>
class MoeFfnGpu {
  public:
    MoeFfnGpu(const MoeShape& shape, int max_tokens, cuda::Blas& blas);
    const MoeShape& shape() const { return shape_; }

    // out (N,D) += MoE(x); x (N,D), sequences of seq_len rows (0: one sequence of N). Keeps what
    // backward needs. count_load adds the routing to tokens_per_expert().
    void forward(T* out, const T* x, const MoeWeights<T>& w, int N, bool count_load,
                 int seq_len = 0);
    // Accumulates dx (N,D) and the fp32 weight gradients of the matching forward from dout
    // (N,D), plus aux_weight times the gradient of aux_loss() (when aux_loss_alpha > 0).
    void backward(T* dx, const MoeGrads<float>& g, const T* dout, const T* x,
                  const MoeWeights<T>& w, int N, double aux_weight = 0.0);
    // The last forward's balance loss (0 when aux_loss_alpha is 0); synchronises.
    double aux_loss() const;

    // The last forward's routing, on the device: experts (N,k), gates (N,k), scores (N,E).
    const int* experts() const { return experts_.data(); }
    const float* gates() const { return gates_.data(); }
    const float* scores() const { return scores_.data(); }
    // Rows per expert in the last forward (from the host copy of the offsets).
    std::vector<int> last_load() const;
    // Assignments per expert summed over forwards with count_load since reset_load(), kept on
    // the device; the host copy synchronises.
    std::vector<double> tokens_per_expert() const;
    void reset_load();
    // Device bytes of the routing, saved activations and backward temporaries.
    std::size_t bytes() const;

  private:
    MoeShape shape_;
    int max_tokens_;
    cuda::Blas& blas_;
    int last_tokens_ = 0, last_seq_len_ = 0;
    std::vector<int> host_offsets_;
    cuda::DeviceBuffer<float> logits_, scores_, gates_, aux_f_, seq_loss_, d_gates_, d_logits_;
    cuda::DeviceBuffer<T> d_logits_t_;  // bf16 copy of d_logits_ for the router's GEMMs
    cuda::DeviceBuffer<int> experts_, offsets_, row_token_, slot_row_;
    cuda::DeviceBuffer<double> load_;
    // Routed experts, (N·k) rows sorted by expert: inputs, w1|w3 outputs, gated hidden, outputs;
    // the shared experts' (N) rows; backward temporaries (routed and shared take turns).
    cuda::DeviceBuffer<T> xs_, h13_, act_, ys_, shared_h13_, shared_act_, d_rows_, d_h13_, d_act_;
    cpu::MoePlan plan();
};

}  // namespace agpt
