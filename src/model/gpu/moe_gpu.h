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
//
// Expert parallelism (set_expert_parallel, as the CPU MoeFfn's): rank q of the communicator
// holds the routed experts [q·E/e, (q+1)·E/e), the sorted rows go to their experts' ranks and the
// outputs come back through all_to_all_v on device buffers (NCCL on a GPU), and backward sends
// the gradients the same two ways. The rows per expert are exchanged first (an all_to_all of
// ints, copied to the host: the exchange is planned there, by model/moe.h's MoeExchange), so a
// forward synchronises the stream twice more. Rows travel as 4-byte words (bf16 rows in pairs).
#include <cstddef>
#include <memory>
#include <vector>

#include "kernels/cuda/device.h"
#include "model/moe.h"

namespace agpt {

class Communicator;

template <typename T>
class MoeFfnGpu {
  public:
    // Routing, saved activations and backward temporaries. Layers that never hold a forward's
    // state at the same time may share one (activation checkpointing recomputes a layer's forward
    // before its backward); the per-expert loads and the balance loss stay each layer's own.
    struct Buffers;
    MoeFfnGpu(const MoeShape& shape, int max_tokens, cuda::Blas& blas,
              std::shared_ptr<Buffers> shared = nullptr);
    const std::shared_ptr<Buffers>& buffers() const { return buf_; }
    const MoeShape& shape() const { return shape_; }
    // Expert parallelism over ep's ranks (null: none); ep's collectives take device pointers.
    // MoeWeights/MoeGrads' w1, w2, w3 then hold this rank's local_experts() only, and every rank
    // of ep must run forward and backward together.
    void set_expert_parallel(Communicator* ep);
    int local_experts() const;

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

    // The last forward's routing, on the device: experts (N,k), gates (N,k), scores (N,E); with
    // shared buffers, that of the layer run last (as last_load()).
    const int* experts() const;
    const float* gates() const;
    const float* scores() const;
    // Rows per expert in the last forward (from the host copy of the offsets).
    std::vector<int> last_load() const;
    // Assignments per expert summed over forwards with count_load since reset_load(), kept on
    // the device; the host copy synchronises.
    std::vector<double> tokens_per_expert() const;
    void reset_load();
    // Device bytes of the loads and balance loss, of the (possibly shared) buffers and of the
    // expert-parallel exchange (as large as the most rows received so far).
    std::size_t bytes() const;

  private:
    MoeShape shape_;
    int max_tokens_;
    cuda::Blas& blas_;
    int last_tokens_ = 0, last_seq_len_ = 0;
    std::shared_ptr<Buffers> buf_;
    cuda::DeviceBuffer<float> seq_loss_;  // the last forward's balance loss per sequence
    cuda::DeviceBuffer<double> load_;
    // Expert parallelism (per layer): the exchange's plan; the rows per expert sent (E) and
    // received (E); recv_order and its inverse; the received rows in expert-major order (kept
    // for backward), the experts' outputs or gradients on them, and the rows as they travel.
    Communicator* ep_ = nullptr;
    MoeExchange exchange_;
    cuda::DeviceBuffer<int> ep_counts_, ep_order_, ep_inverse_;
    cuda::DeviceBuffer<T> ep_xs_, ep_rows_, ep_wire_;
    cpu::MoePlan plan();
    // The routed experts' forward (backward) on R sorted rows, host_offsets over n_experts.
    void experts_forward(T* ys, const T* xs, const MoeWeights<T>& w, const int* host_offsets,
                         int n_experts, int R);
    void experts_backward(T* dxs, const MoeGrads<float>& g, const T* dys, const T* xs,
                          const MoeWeights<T>& w, const int* host_offsets, int n_experts, int R);
    // Plans the exchange from the host offsets and sends buf_->xs to the experts' ranks (ep_xs_).
    void dispatch();
    // in (M, D) sorted rows to the experts' ranks, out expert-major (exchange_.received, D).
    void send_forward(T* out, const T* in);
    // rows (exchange_.received, D) expert-major back to their ranks: out (M, D) sorted rows.
    void send_back(T* out, const T* rows);
};

}  // namespace agpt
