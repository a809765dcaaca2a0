#pragma once
// The mixture-of-experts FFN of a DeepSeek-V3-style block (design.md's MoE table):
//
//   out = Σ_{j<k} gate_j · FFN_{e_j}(x) + FFN_shared(x)
//
// where the router (cpu/router.h) picks k of E routed experts per token, every FFN is SwiGLU
// `w2(silu(w1 x) ⊙ w3 x)` of width `hidden` (the shared one: n_shared·hidden, run on every
// token) and the gates multiply the experts' outputs (DeepSeek-V3's order). Tokens are sorted by
// expert and each expert runs as one GEMM over its contiguous rows (cpu/moe_dispatch.h); there
// is no per-token loop in the FFN.
//
// Weights, torchtitan's layout: router (E, D); w1, w3 (E, hidden, D); w2 (E, D, hidden);
// shared_w1, shared_w3 (n_shared·hidden, D); shared_w2 (D, n_shared·hidden); expert_bias (E),
// fp32, only steers the choice of experts.
//
// Intended use:
//   MoeFfn<float> moe(shape, max_tokens);
//   moe.forward(out, x, weights, N, /*count_load=*/true);   // out (N,D) += MoE(x)
//   moe.backward(dx, grads, dout, x, weights, N);             // after the matching forward
//   moe.tokens_per_expert();                                  // load since the last reset
#include <cstddef>
#include <memory>
#include <vector>

#include "kernels/cpu/moe_dispatch.h"
#include "kernels/cpu/router.h"

namespace agpt {

class Communicator;

struct MoeShape {
    int dim = 0;
    int n_experts = 0;
    int n_shared_experts = 0;
    int top_k = 0;
    int hidden = 0;  // width of one routed expert
    cpu::RouterOptions router;
    // > 0: DeepSeek-V3's sequence-level balance loss α·Σ_e f_e·P_e per sequence, averaged over
    // the batch's sequences, with f_e = E/(k·T)·(tokens of the sequence routed to e) and
    // P_e = mean over the sequence of the normalised scores s_e / Σ_j s_j.
    double aux_loss_alpha = 0.0;
    int shared_hidden() const { return n_shared_experts * hidden; }
};

// max(load) / mean(load) over the experts: 1 when balanced, E when one expert takes every token;
// 1 for an empty load.
double load_imbalance(const std::vector<double>& tokens_per_expert);

// Aux-loss-free load balancing (DeepSeek-V3, torchtitan): bias += coeff·sign(mean − load),
// then the step is centred (its mean subtracted) so the biases do not drift together.
void update_expert_bias(float* expert_bias, const std::vector<double>& tokens_per_expert,
                        double coeff);

// Expert parallelism's exchange of sorted rows over e ranks, planned on the host (the CPU and
// the GPU layer alike): rank q holds the routed experts [q·El, (q+1)·El). Each rank sends its
// rows sorted by expert to the experts' ranks; the received rows come source-major (source rank,
// then expert) and the experts' GEMMs want them expert-major (expert, then source rank), token
// order kept within each block.
struct MoeExchange {
    int ranks = 1, local_experts = 0;
    // Rows per (source rank, local expert) received: the all_to_all of each rank's rows per expert
    // (El values for each rank), filled by the caller before plan().
    std::vector<int> recv_expert_rows;
    // Values (rows · values_per_row) sent to / received from each rank; the local experts' row
    // offsets in expert-major order (El+1); where each source-major received row sits in that
    // order; the rows received.
    std::vector<int> send_values, recv_values, local_offsets, recv_order;
    int received = 0;

    void reset(int ranks, int local_experts);
    // From this rank's sorted-row offsets (E+1, E = ranks·local_experts) and recv_expert_rows.
    void plan(const int* offsets, int values_per_row);
};

template <typename T>
struct MoeWeights {
    const T* router = nullptr;
    const T *w1 = nullptr, *w2 = nullptr, *w3 = nullptr;
    const T *shared_w1 = nullptr, *shared_w2 = nullptr, *shared_w3 = nullptr;  // null: none
    const float* expert_bias = nullptr;                                        // null: none
};

template <typename T>
struct MoeGrads {
    T* router = nullptr;
    T *w1 = nullptr, *w2 = nullptr, *w3 = nullptr;
    T *shared_w1 = nullptr, *shared_w2 = nullptr, *shared_w3 = nullptr;
};

template <typename T>
class MoeFfn {
  public:
    // Routing, saved activations and backward temporaries. Layers that never hold a forward's
    // state at the same time may share one (activation checkpointing recomputes a layer's forward
    // right before its backward); load counts and the aux loss stay per layer.
    struct Buffers {
        std::vector<T> aux_f;  // f_e per sequence, (sequences, E)
        std::vector<T> logits, scores, gates;
        std::vector<int> experts, offsets, row_token, slot_row;
        cpu::MoePlan plan;
        // Routed experts, (N·k) rows sorted by expert: inputs, w1|w3 outputs, gated hidden,
        // outputs.
        std::vector<T> xs, h13, act, ys;
        // Shared experts, (N) rows.
        std::vector<T> shared_h13, shared_act;
        // Backward temporaries.
        std::vector<T> d_rows, d_h13, d_act, d_gates, d_logits, d_scores;
    };

    // shared: another layer's buffers() to reuse (sized for the same shape and max_tokens).
    MoeFfn(const MoeShape& shape, int max_tokens, std::shared_ptr<Buffers> shared = nullptr);
    const std::shared_ptr<Buffers>& buffers() const { return buf_; }

    const MoeShape& shape() const { return shape_; }
    // Expert parallelism over ep's ranks (null: none): rank q holds the routed experts
    // [q·E/e, (q+1)·E/e) of e = ep->size(), and MoeWeights/MoeGrads' w1, w2, w3 hold that range
    // only. Each rank routes its own tokens; rows go to their expert's rank and the outputs
    // come back (all_to_all_v), so every rank of ep must run forward and backward together.
    // float only.
    void set_expert_parallel(Communicator* ep);
    int local_experts() const;
    int first_local_expert() const;
    // out (N,D) += MoE(x); x (N,D), sequences of seq_len rows (0: one sequence of N). Keeps what
    // backward needs. count_load adds the routing to tokens_per_expert().
    void forward(T* out, const T* x, const MoeWeights<T>& w, int N, bool count_load,
                 int seq_len = 0);
    // Accumulates dx (N,D) and the gradients of the matching forward's weights from dout (N,D),
    // plus aux_weight times the gradient of aux_loss() (when aux_loss_alpha > 0).
    void backward(T* dx, const MoeGrads<T>& g, const T* dout, const T* x, const MoeWeights<T>& w,
                  int N, double aux_weight = 0.0);
    // The last forward's sequence-level balance loss (0 when aux_loss_alpha is 0).
    double aux_loss() const { return aux_loss_; }

    // The last forward's routing: experts (N,k), gates (N,k), scores (N,E).
    const int* experts() const { return buf_->experts.data(); }
    const T* gates() const { return buf_->gates.data(); }
    const T* scores() const { return buf_->scores.data(); }
    // Rows per expert in the last forward.
    std::vector<int> last_load() const;
    // Assignments per expert summed over forwards with count_load since reset_load().
    const std::vector<double>& tokens_per_expert() const { return tokens_per_expert_; }
    void reset_load();
    // Replaces tokens_per_expert() by its sum over comm's ranks, so that ranks that routed
    // different tokens apply the same bias update (data parallelism).
    void sum_load(Communicator& comm);
    // Bytes of the buffers this layer uses (routing, saved activations, backward temporaries;
    // shared ones included);
    // bytes_for gives the same for a shape without building the layer (`agpt plan`).
    std::size_t bytes() const;
    static std::size_t bytes_for(const MoeShape& shape, int max_tokens);

  private:
    MoeShape shape_;
    int max_tokens_;
    std::vector<double> tokens_per_expert_;
    double aux_loss_ = 0.0;
    int aux_seq_len_ = 0;
    std::shared_ptr<Buffers> buf_;
    // Expert parallelism (per layer, not in the shared buffers): the exchange's plan, the
    // received rows in expert-major order (ep_xs_, kept for backward) with their plan over the
    // local experts.
    Communicator* ep_ = nullptr;
    MoeExchange exchange_;
    cpu::MoePlan local_plan_;
    std::vector<T> ep_xs_, ep_rows_, ep_wire_;
    // The routed experts' forward (backward) on R rows of `plan`'s experts.
    void experts_forward(T* ys, const T* xs, const MoeWeights<T>& w, const cpu::MoePlan& plan,
                         int R);
    void experts_backward(T* dxs, const MoeGrads<T>& g, const T* dys, const T* xs,
                          const MoeWeights<T>& w, const cpu::MoePlan& plan, int R);
    // Sends the sorted rows buf_->xs (M, D) to their experts' ranks: fills ep_xs_, exchange_.
    void dispatch();
    // rows (exchange_.received, D) in expert-major order go back to their source ranks: out (M, D)
    // in the sorted order of this rank's routing.
    void send_back(T* out, const T* rows);
    // The reverse of send_back: in (M, D) sorted rows to the expert ranks, expert-major out.
    void send_forward(T* out, const T* in);
};

}  // namespace agpt
