#include "model/moe.h"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "dist/communicator.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/swiglu.h"

namespace agpt {

using namespace agpt::cpu;

namespace {

template <typename T>
void zero(std::vector<T>& v, std::size_t n) {
    std::fill(v.begin(), v.begin() + static_cast<long>(n), T(0));
}

// h13 (N, 2F) = [x · w1ᵀ | x · w3ᵀ]: the fused gate/up rows that swiglu_forward reads.
template <typename T>
void swiglu_in_forward(T* h13, const T* x, const T* w1, const T* w3, int N, int D, int F) {
    gemm<T>(false, true, N, F, D, T(1), x, D, w1, D, T(0), h13, 2 * F);
    gemm<T>(false, true, N, F, D, T(1), x, D, w3, D, T(0), h13 + F, 2 * F);
}

// Accumulates dx (N,D), dw1, dw3 (F,D) from dh13 (N, 2F).
template <typename T>
void swiglu_in_backward(T* dx, T* dw1, T* dw3, const T* dh13, const T* x, const T* w1, const T* w3,
                        int N, int D, int F) {
    gemm<T>(false, false, N, D, F, T(1), dh13, 2 * F, w1, D, T(1), dx, D);
    gemm<T>(false, false, N, D, F, T(1), dh13 + F, 2 * F, w3, D, T(1), dx, D);
    gemm<T>(true, false, F, D, N, T(1), dh13, 2 * F, x, D, T(1), dw1, D);
    gemm<T>(true, false, F, D, N, T(1), dh13 + F, 2 * F, x, D, T(1), dw3, D);
}

template <typename T>
void grow(std::vector<T>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
}

template <typename T>
void all_to_all_rows(Communicator& comm, const T* in, const int* send_values, T* out,
                     const int* recv_values) {
    if constexpr (std::is_same_v<T, float>)
        comm.all_to_all_v(in, send_values, out, recv_values);
    else
        fail("model: expert parallelism runs in float only");
}

}  // namespace

double load_imbalance(const std::vector<double>& tokens_per_expert) {
    if (tokens_per_expert.empty()) return 1.0;
    double total = 0, most = 0;
    for (double t : tokens_per_expert) {
        total += t;
        most = std::max(most, t);
    }
    return total > 0 ? most * static_cast<double>(tokens_per_expert.size()) / total : 1.0;
}

void update_expert_bias(float* expert_bias, const std::vector<double>& load, double coeff) {
    const int E = static_cast<int>(load.size());
    if (E == 0) return;
    double mean = 0;
    for (double t : load) mean += t / E;
    std::vector<double> delta(E);
    double delta_mean = 0;
    for (int e = 0; e < E; e++) {
        const double gap = mean - load[e];
        delta[e] = coeff * static_cast<double>((gap > 0) - (gap < 0));
        delta_mean += delta[e] / E;
    }
    for (int e = 0; e < E; e++) expert_bias[e] += static_cast<float>(delta[e] - delta_mean);
}

template <typename T>
MoeFfn<T>::MoeFfn(const MoeShape& s, int max_tokens, std::shared_ptr<Buffers> shared)
    : shape_(s), max_tokens_(max_tokens), buf_(std::move(shared)) {
    if (s.n_experts <= 0 || s.top_k <= 0 || s.top_k > s.n_experts)
        fail("model: MoE top_k {} must be between 1 and the number of experts {}", s.top_k,
             s.n_experts);
    if (s.dim <= 0 || s.hidden <= 0 || s.n_shared_experts < 0)
        fail("model: MoE dim {}, hidden {} and shared experts {} must be positive", s.dim, s.hidden,
             s.n_shared_experts);
    const std::size_t N = max_tokens, E = s.n_experts, K = s.top_k, M = N * K, D = s.dim,
                      F = s.hidden, FS = s.shared_hidden();
    tokens_per_expert_.assign(E, 0.0);
    if (!buf_) buf_ = std::make_shared<Buffers>();
    buf_->logits.resize(N * E);
    buf_->scores.resize(N * E);
    buf_->gates.resize(N * K);
    buf_->experts.resize(N * K);
    buf_->offsets.resize(E + 1);
    buf_->row_token.resize(M);
    buf_->slot_row.resize(M);
    buf_->xs.resize(M * D);
    buf_->h13.resize(M * 2 * F);
    buf_->act.resize(M * F);
    buf_->ys.resize(M * D);
    buf_->shared_h13.resize(N * 2 * FS);
    buf_->shared_act.resize(N * FS);
    buf_->d_rows.resize(std::max(M * D, N * FS));
    buf_->d_h13.resize(std::max(M * 2 * F, N * 2 * FS));
    buf_->d_act.resize(M * F);
    buf_->d_gates.resize(N * K);
    buf_->d_logits.resize(N * E);
    if (s.aux_loss_alpha > 0) {
        buf_->aux_f.resize(N * E);
        buf_->d_scores.resize(N * E);
    }
    buf_->plan = {s.n_experts, buf_->offsets.data(), buf_->row_token.data(), buf_->slot_row.data()};
}

template <typename T>
void MoeFfn<T>::forward(T* out, const T* x, const MoeWeights<T>& w, int N, bool count_load,
                        int seq_len) {
    if (N > max_tokens_) fail("model: MoE got {} tokens, allocated for {}", N, max_tokens_);
    if (seq_len <= 0) seq_len = N;
    if (N % seq_len != 0) fail("model: MoE got {} tokens, not whole sequences of {}", N, seq_len);
    const int D = shape_.dim, E = shape_.n_experts, K = shape_.top_k, FS = shape_.shared_hidden(),
              M = N * K;
    matmul_forward<T>(buf_->logits.data(), x, w.router, N, D, E);
    router_forward<T>(buf_->experts.data(), buf_->gates.data(), buf_->scores.data(),
                      buf_->logits.data(), w.expert_bias, N, E, K, shape_.router);
    moe_plan(buf_->plan, buf_->experts.data(), N, K, E);
    if (count_load)
        for (int e = 0; e < E; e++)
            tokens_per_expert_[e] += buf_->offsets[e + 1] - buf_->offsets[e];
    aux_loss_ = 0.0;
    aux_seq_len_ = seq_len;
    if (shape_.aux_loss_alpha > 0) {
        // Per sequence: f_e from the routed counts, P_e from the normalised scores.
        const int S = N / seq_len;
        for (int b = 0; b < S; b++) {
            T* f = buf_->aux_f.data() + static_cast<std::size_t>(b) * E;
            std::fill(f, f + E, T(0));
            std::vector<double> P(E, 0.0);
            for (int t = b * seq_len; t < (b + 1) * seq_len; t++) {
                for (int j = 0; j < K; j++)
                    f[buf_->experts[static_cast<std::size_t>(t) * K + j]] += 1;
                const T* st = buf_->scores.data() + static_cast<std::size_t>(t) * E;
                double sum = 0;
                for (int e = 0; e < E; e++) sum += st[e];
                for (int e = 0; e < E; e++) P[e] += st[e] / sum / seq_len;
            }
            double l = 0;
            for (int e = 0; e < E; e++) {
                f[e] *= static_cast<T>(static_cast<double>(E) / (K * seq_len));
                l += f[e] * P[e];
            }
            aux_loss_ += shape_.aux_loss_alpha * l / S;
        }
    }

    moe_gather<T>(buf_->xs.data(), x, buf_->plan, N, K, D);
    if (ep_ == nullptr) {
        experts_forward(buf_->ys.data(), buf_->xs.data(), w, buf_->plan, M);
    } else {
        dispatch();
        grow(ep_rows_, static_cast<std::size_t>(exchange_.received) * D);
        experts_forward(ep_rows_.data(), ep_xs_.data(), w, local_plan_, exchange_.received);
        send_back(buf_->ys.data(), ep_rows_.data());
    }
    moe_combine<T>(out, buf_->ys.data(), buf_->gates.data(), buf_->plan, N, K, D);

    if (FS > 0) {
        swiglu_in_forward<T>(buf_->shared_h13.data(), x, w.shared_w1, w.shared_w3, N, D, FS);
        swiglu_forward<T>(buf_->shared_act.data(), buf_->shared_h13.data(), N, FS);
        matmul_forward<T>(out, buf_->shared_act.data(), w.shared_w2, N, FS, D, true);
    }
}

template <typename T>
void MoeFfn<T>::backward(T* dx, const MoeGrads<T>& g, const T* dout, const T* x,
                         const MoeWeights<T>& w, int N, double aux_weight) {
    const int D = shape_.dim, E = shape_.n_experts, K = shape_.top_k, FS = shape_.shared_hidden(),
              M = N * K;
    if (FS > 0) {
        zero(buf_->d_rows, static_cast<std::size_t>(N) * FS);
        matmul_backward<T>(buf_->d_rows.data(), g.shared_w2, dout, buf_->shared_act.data(),
                           w.shared_w2, N, FS, D);
        zero(buf_->d_h13, static_cast<std::size_t>(N) * 2 * FS);
        swiglu_backward<T>(buf_->d_h13.data(), buf_->d_rows.data(), buf_->shared_h13.data(), N, FS);
        swiglu_in_backward<T>(dx, g.shared_w1, g.shared_w3, buf_->d_h13.data(), x, w.shared_w1,
                              w.shared_w3, N, D, FS);
    }
    // Combine: out += Σ gate · y.  buf_->d_rows holds d(ys), (M, D).
    zero(buf_->d_gates, static_cast<std::size_t>(M));
    moe_combine_backward<T>(buf_->d_rows.data(), buf_->d_gates.data(), dout, buf_->ys.data(),
                            buf_->gates.data(), buf_->plan, N, K, D);
    if (ep_ == nullptr) {
        // buf_->d_rows holds d(ys) and then d(xs), (M, D).
        experts_backward(buf_->d_rows.data(), g, buf_->d_rows.data(), buf_->xs.data(), w,
                         buf_->plan, M);
    } else {
        send_forward(ep_rows_.data(), buf_->d_rows.data());
        experts_backward(ep_rows_.data(), g, ep_rows_.data(), ep_xs_.data(), w, local_plan_,
                         exchange_.received);
        send_back(buf_->d_rows.data(), ep_rows_.data());
    }
    moe_gather_backward<T>(dx, buf_->d_rows.data(), buf_->plan, N, K, D);
    // Router: only the gates carry a gradient (the choice is piecewise constant).
    zero(buf_->d_logits, static_cast<std::size_t>(N) * E);
    router_backward<T>(buf_->d_logits.data(), buf_->d_gates.data(), buf_->scores.data(),
                       buf_->experts.data(), N, E, K, shape_.router);
    if (shape_.aux_loss_alpha > 0 && aux_weight != 0.0) {
        // ∂L/∂s'_{t,e} = α·f_{b,e}/(S·T); s' = s/Σs gives ∂L/∂s_j = (∂L/∂s'_j − Σ_e
        // ∂L/∂s'_e·s'_e)/Σs.
        const int T_len = aux_seq_len_, S = N / T_len;
        const double c = aux_weight * shape_.aux_loss_alpha / (static_cast<double>(S) * T_len);
        for (int t = 0; t < N; t++) {
            const T* f = buf_->aux_f.data() + static_cast<std::size_t>(t / T_len) * E;
            const T* st = buf_->scores.data() + static_cast<std::size_t>(t) * E;
            T* ds = buf_->d_scores.data() + static_cast<std::size_t>(t) * E;
            double sum = 0, dot = 0;
            for (int e = 0; e < E; e++) sum += st[e];
            for (int e = 0; e < E; e++) dot += c * f[e] * st[e] / sum;
            for (int e = 0; e < E; e++) ds[e] = static_cast<T>((c * f[e] - dot) / sum);
        }
        router_scores_backward<T>(buf_->d_logits.data(), buf_->d_scores.data(), buf_->scores.data(),
                                  N, E, shape_.router.score);
    }
    matmul_backward<T>(dx, g.router, buf_->d_logits.data(), x, w.router, N, D, E);
}

template <typename T>
void MoeFfn<T>::experts_forward(T* ys, const T* xs, const MoeWeights<T>& w, const MoePlan& plan,
                                int R) {
    const int D = shape_.dim, F = shape_.hidden;
    grow(buf_->h13, static_cast<std::size_t>(R) * 2 * F);
    grow(buf_->act, static_cast<std::size_t>(R) * F);
    grouped_matmul_forward<T>(buf_->h13.data(), 2 * F, xs, w.w1, plan, D, F);
    grouped_matmul_forward<T>(buf_->h13.data() + F, 2 * F, xs, w.w3, plan, D, F);
    swiglu_forward<T>(buf_->act.data(), buf_->h13.data(), R, F);
    grouped_matmul_forward<T>(ys, D, buf_->act.data(), w.w2, plan, F, D);
}

// dys and dxs may be the same rows: dys is read before dxs is written.
template <typename T>
void MoeFfn<T>::experts_backward(T* dxs, const MoeGrads<T>& g, const T* dys, const T* xs,
                                 const MoeWeights<T>& w, const MoePlan& plan, int R) {
    const int D = shape_.dim, F = shape_.hidden;
    grow(buf_->d_act, static_cast<std::size_t>(R) * F);
    grow(buf_->d_h13, static_cast<std::size_t>(R) * 2 * F);
    zero(buf_->d_act, static_cast<std::size_t>(R) * F);
    grouped_matmul_backward<T>(buf_->d_act.data(), g.w2, dys, D, buf_->act.data(), w.w2, plan, F,
                               D);
    zero(buf_->d_h13, static_cast<std::size_t>(R) * 2 * F);
    swiglu_backward<T>(buf_->d_h13.data(), buf_->d_act.data(), buf_->h13.data(), R, F);
    std::fill(dxs, dxs + static_cast<std::size_t>(R) * D, T(0));
    grouped_matmul_backward<T>(dxs, g.w1, buf_->d_h13.data(), 2 * F, xs, w.w1, plan, D, F);
    grouped_matmul_backward<T>(dxs, g.w3, buf_->d_h13.data() + F, 2 * F, xs, w.w3, plan, D, F);
}

template <typename T>
void MoeFfn<T>::set_expert_parallel(Communicator* ep) {
    if (ep != nullptr) {
        if (!std::is_same_v<T, float>) fail("model: expert parallelism runs in float only");
        if (shape_.n_experts % ep->size() != 0)
            fail("model: {} routed experts cannot be divided over {} expert-parallel ranks",
                 shape_.n_experts, ep->size());
    }
    ep_ = ep;
    const int e = ep_ ? ep_->size() : 1;
    exchange_.reset(e, shape_.n_experts / e);
    local_plan_ = {exchange_.local_experts, exchange_.local_offsets.data(), nullptr, nullptr};
}

template <typename T>
int MoeFfn<T>::local_experts() const {
    return shape_.n_experts / (ep_ ? ep_->size() : 1);
}

template <typename T>
int MoeFfn<T>::first_local_expert() const {
    return ep_ ? ep_->rank() * local_experts() : 0;
}

void MoeExchange::reset(int e, int El) {
    ranks = e;
    local_experts = El;
    send_values.assign(e, 0);
    recv_values.assign(e, 0);
    recv_expert_rows.assign(static_cast<std::size_t>(e) * El, 0);
    local_offsets.assign(El + 1, 0);
    recv_order.clear();
    received = 0;
}

void MoeExchange::plan(const int* offsets, int values_per_row) {
    const int e = ranks, El = local_experts;
    received = 0;
    std::fill(local_offsets.begin(), local_offsets.end(), 0);
    for (int q = 0; q < e; q++) {
        send_values[q] = (offsets[(q + 1) * El] - offsets[q * El]) * values_per_row;
        int rows = 0;
        for (int x = 0; x < El; x++) {
            rows += recv_expert_rows[q * El + x];
            local_offsets[x + 1] += recv_expert_rows[q * El + x];
        }
        recv_values[q] = rows * values_per_row;
        received += rows;
    }
    for (int x = 0; x < El; x++) local_offsets[x + 1] += local_offsets[x];
    recv_order.resize(received);
    std::vector<int> next(local_offsets.begin(), local_offsets.end() - 1);
    for (int q = 0, i = 0; q < e; q++)
        for (int x = 0; x < El; x++)
            for (int r = 0; r < recv_expert_rows[q * El + x]; r++) recv_order[i++] = next[x]++;
}

template <typename T>
void MoeFfn<T>::dispatch() {
    const int D = shape_.dim;
    // Rows per expert of this rank's routing; block q holds rank q's experts.
    std::vector<int> expert_rows(shape_.n_experts);
    for (int x = 0; x < shape_.n_experts; x++)
        expert_rows[x] = buf_->offsets[x + 1] - buf_->offsets[x];
    ep_->all_to_all(expert_rows.data(), exchange_.recv_expert_rows.data(), exchange_.local_experts);
    exchange_.plan(buf_->offsets.data(), D);
    grow(ep_xs_, static_cast<std::size_t>(exchange_.received) * D);
    send_forward(ep_xs_.data(), buf_->xs.data());
}

template <typename T>
void MoeFfn<T>::send_forward(T* out, const T* in) {
    const std::size_t D = shape_.dim, R = exchange_.received;
    grow(ep_wire_, R * D);
    all_to_all_rows(*ep_, in, exchange_.send_values.data(), ep_wire_.data(),
                    exchange_.recv_values.data());
    for (std::size_t i = 0; i < R; i++)
        std::copy_n(ep_wire_.data() + i * D, D,
                    out + static_cast<std::size_t>(exchange_.recv_order[i]) * D);
}

template <typename T>
void MoeFfn<T>::send_back(T* out, const T* rows) {
    const std::size_t D = shape_.dim, R = exchange_.received;
    grow(ep_wire_, R * D);
    for (std::size_t i = 0; i < R; i++)
        std::copy_n(rows + static_cast<std::size_t>(exchange_.recv_order[i]) * D, D,
                    ep_wire_.data() + i * D);
    all_to_all_rows(*ep_, ep_wire_.data(), exchange_.recv_values.data(), out,
                    exchange_.send_values.data());
}

template <typename T>
std::vector<int> MoeFfn<T>::last_load() const {
    std::vector<int> load(shape_.n_experts);
    for (int e = 0; e < shape_.n_experts; e++) load[e] = buf_->offsets[e + 1] - buf_->offsets[e];
    return load;
}

template <typename T>
void MoeFfn<T>::reset_load() {
    std::fill(tokens_per_expert_.begin(), tokens_per_expert_.end(), 0.0);
}

template <typename T>
void MoeFfn<T>::sum_load(Communicator& comm) {
    comm.all_reduce(tokens_per_expert_.data(), tokens_per_expert_.size(), ReduceOp::Sum);
}

template <typename T>
std::size_t MoeFfn<T>::bytes() const {
    const std::size_t floats =
        buf_->logits.size() + buf_->scores.size() + buf_->gates.size() + buf_->xs.size() +
        buf_->h13.size() + buf_->act.size() + buf_->ys.size() + buf_->shared_h13.size() +
        buf_->shared_act.size() + buf_->d_rows.size() + buf_->d_h13.size() + buf_->d_act.size() +
        buf_->d_gates.size() + buf_->d_logits.size() + buf_->aux_f.size() + buf_->d_scores.size();
    const std::size_t ints = buf_->experts.size() + buf_->offsets.size() + buf_->row_token.size() +
                             buf_->slot_row.size();
    return floats * sizeof(T) + ints * sizeof(int);
}

template <typename T>
std::size_t MoeFfn<T>::bytes_for(const MoeShape& s, int max_tokens) {
    const std::size_t N = max_tokens, E = s.n_experts, K = s.top_k, M = N * K, D = s.dim,
                      F = s.hidden, FS = s.shared_hidden();
    const std::size_t aux = s.aux_loss_alpha > 0 ? 2 * N * E : 0;
    const std::size_t floats = aux + 3 * N * E + 2 * N * K + 2 * M * D + M * 2 * F + 2 * M * F +
                               N * 2 * FS + N * FS + std::max(M * D, N * FS) +
                               std::max(M * 2 * F, N * 2 * FS);
    const std::size_t ints = N * K + E + 1 + 2 * M;
    return floats * sizeof(T) + ints * sizeof(int);
}

template class MoeFfn<float>;
template class MoeFfn<double>;

}  // namespace agpt
