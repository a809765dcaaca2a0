#include "optim/mano.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "core/timer.h"
#include "optim/adamw_group.h"
#include "optim/param_state.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace agpt {
namespace {

struct ManoStep {
    float momentum;
    bool v2;
    double eps;
    float decay;   // 1 − lr·wd
    double scale;  // lr·0.2·√n
};

// The direction m for one element from its gradient and updated momentum buffer.
template <bool kNesterov>
inline float direction(float g, float buf_new, float momentum) {
    if constexpr (kNesterov) return g + momentum * buf_new;
    return buf_new;
}

// Slice coefficient κ with T = m − κ·W, from Σ W² and Σ m·W over the slice.
inline double kappa(double w2, double mw, const ManoStep& s) {
    if (s.v2) return mw;  // v2 projects on W itself
    const double d = std::max(std::sqrt(w2), s.eps);
    return mw / d / d;  // ⟨m, W/d⟩ · (W/d)
}

// ‖T‖² = Σm² − 2κ·Σm·W + κ²·ΣW², from the sums of the first sweep, so that T needs no sweep of
// its own. The sums are exact to double precision over the float inputs; the expansion loses
// digits only when T is nearly cancelled (m almost parallel to W), which kNeedsSweep detects —
// such a slice gets an explicit sweep, as the reference computes it.
constexpr double kCancellation = 1e-8;

struct SliceSums {
    double w2 = 0.0, mw = 0.0, m2 = 0.0;
};

// Returns ‖T‖², or a negative value when the expansion cannot be trusted.
inline double tnorm2(const SliceSums& a, float k) {
    const double kd = k;
    const double t2 = a.m2 - 2.0 * kd * a.mw + kd * kd * a.w2;
    return t2 > kCancellation * a.m2 ? t2 : -1.0;
}

inline float step_scale(double t2, const ManoStep& s) {
    const double tn = std::sqrt(t2);
    return static_cast<float>(s.scale / (s.v2 ? tn + s.eps : std::max(tn, s.eps)));
}

template <bool kNesterov>
double explicit_tnorm2(const float* __restrict w, const float* __restrict g,
                       const float* __restrict b, std::size_t stride, int len, float k, float mu) {
    double t2 = 0.0;
    for (int e = 0; e < len; ++e) {
        const std::size_t i = static_cast<std::size_t>(e) * stride;
        const double t = direction<kNesterov>(g[i], b[i], mu) - k * w[i];
        t2 += t * t;
    }
    return t2;
}

// Slices along rows (k = 1), rows [r0, r1): each row is a slice of length C, swept twice (sums,
// then the update) while it stays in cache.
template <bool kNesterov>
void mano_rows(float* W, const float* G, float* buf, int r0, int r1, int C, const ManoStep& s) {
    const float mu = s.momentum, decay = s.decay;
    for (int i = r0; i < r1; ++i) {
        float* __restrict w = W + static_cast<std::size_t>(i) * C;
        const float* __restrict g = G + static_cast<std::size_t>(i) * C;
        float* __restrict b = buf + static_cast<std::size_t>(i) * C;
        SliceSums sum;
        double w2 = 0.0, mw = 0.0, m2 = 0.0;
        // The vectoriser's lane order is fixed at compile time, so the sums do not depend on
        // the thread count.
#pragma omp simd reduction(+ : w2, mw, m2)
        for (int j = 0; j < C; ++j) {
            const float bn = mu * b[j] + g[j];
            b[j] = bn;
            const double m = direction<kNesterov>(g[j], bn, mu), x = w[j];
            w2 = std::fma(x, x, w2);
            mw = std::fma(m, x, mw);
            m2 = std::fma(m, m, m2);
        }
        sum.w2 = w2;
        sum.mw = mw;
        sum.m2 = m2;
        const float k = static_cast<float>(kappa(sum.w2, sum.mw, s));
        double t2 = tnorm2(sum, k);
        if (t2 < 0.0) t2 = explicit_tnorm2<kNesterov>(w, g, b, 1, C, k, mu);
        const float step = step_scale(t2, s);
        for (int j = 0; j < C; ++j) {
            const float t = direction<kNesterov>(g[j], b[j], mu) - k * w[j];
            w[j] = w[j] * decay - step * t;
        }
    }
}

// Slices along columns (k = 0): each column is a slice of length R. Rows are taken in fixed
// blocks, each streamed contiguously (as AdamW streams its buffers): the first pass leaves
// per-block column sums, which are then added block after block (so the sums do not depend on
// the thread count), and a second pass applies the update. A matrix that fits in cache is done
// whole by one thread, so its second pass reads from cache (20 bytes of memory traffic per
// element against AdamW's 28); a larger one costs 32 bytes per element.

// Column sums of rows [r0, r1) into w2, mw, m2 (each C long, zeroed here).
template <bool kNesterov>
void mano_cols_sums(const float* W, const float* G, float* buf, int r0, int r1, int C, float mu,
                    double* __restrict w2, double* __restrict mw, double* __restrict m2) {
    std::fill(w2, w2 + C, 0.0);
    std::fill(mw, mw + C, 0.0);
    std::fill(m2, m2 + C, 0.0);
    for (int i = r0; i < r1; ++i) {
        const std::size_t row = static_cast<std::size_t>(i) * C;
        float* __restrict b = buf + row;
        const float* __restrict g = G + row;
        const float* __restrict w = W + row;
#pragma omp simd
        for (int j = 0; j < C; ++j) {
            const float bn = mu * b[j] + g[j];
            b[j] = bn;
            const double m = direction<kNesterov>(g[j], bn, mu), x = w[j];
            w2[j] = std::fma(x, x, w2[j]);
            mw[j] = std::fma(m, x, mw[j]);
            m2[j] = std::fma(m, m, m2[j]);
        }
    }
}

// κ and the step scale of every column from the blocks' sums (n_blocks × 3C, block-major).
template <bool kNesterov>
void mano_cols_coefficients(const float* W, const float* G, const float* buf, int R, int C,
                            const double* partial, int n_blocks, const ManoStep& s,
                            float* __restrict k, float* __restrict step) {
    const std::size_t c3 = static_cast<std::size_t>(C) * 3;
    for (int j = 0; j < C; ++j) {
        SliceSums sum;
        for (int blk = 0; blk < n_blocks; ++blk) {
            const double* p = partial + blk * c3;
            sum.w2 += p[j];
            sum.mw += p[C + j];
            sum.m2 += p[2 * C + j];
        }
        k[j] = static_cast<float>(kappa(sum.w2, sum.mw, s));
        double t2 = tnorm2(sum, k[j]);
        if (t2 < 0.0)
            t2 = explicit_tnorm2<kNesterov>(W + j, G + j, buf + j, static_cast<std::size_t>(C), R,
                                            k[j], s.momentum);
        step[j] = step_scale(t2, s);
    }
}

template <bool kNesterov>
void mano_cols_update(float* W, const float* G, const float* buf, int r0, int r1, int C, float mu,
                      float decay, const float* __restrict k, const float* __restrict step) {
    for (int i = r0; i < r1; ++i) {
        const std::size_t row = static_cast<std::size_t>(i) * C;
        const float* __restrict b = buf + row;
        const float* __restrict g = G + row;
        float* __restrict w = W + row;
#pragma omp simd
        for (int j = 0; j < C; ++j) {
            const float t = direction<kNesterov>(g[j], b[j], mu) - k[j] * w[j];
            w[j] = w[j] * decay - step[j] * t;
        }
    }
}

// A unit of work: a block of rows of one matrix. Column normalisation runs three parallel
// loops (sums per block, coefficients per matrix, update per block) in one parallel region, or
// all three on one thread for a matrix that fits in cache; row normalisation one loop. Each
// unit's arithmetic is fixed, whichever thread takes it.
struct ManoItem {
    int param;
    int begin, count;
    std::size_t partial;  // offset of this block's column sums (axis 0)
    bool whole;           // axis 0: the whole matrix, all three passes by one thread
};

// Column normalisation of a matrix whose W, g and buf fit this share of the last-level cache
// runs start to finish on one thread: its second pass then reads from cache, not memory.
constexpr std::size_t kWholeMatrixBytes = std::size_t{12} << 20;

std::vector<ManoItem> mano_items(const std::vector<OptimParam>& hidden, int axis,
                                 std::size_t* partial_size) {
    std::vector<ManoItem> items;
    std::size_t partial = 0;
    for (int p = 0; p < static_cast<int>(hidden.size()); ++p) {
        const int R = hidden[p].shape[0], C = hidden[p].shape[1];
        const bool whole = axis == 0 && hidden[p].numel() * 3 * sizeof(float) <= kWholeMatrixBytes;
        // Otherwise about 64K elements per block.
        const int rows = whole ? R : std::max(1, 65536 / std::max(C, 1));
        for (int i = 0; i < R; i += rows) {
            items.push_back({p, i, std::min(rows, R - i), partial, whole});
            if (axis == 0) partial += static_cast<std::size_t>(C) * 3;
        }
    }
    if (partial_size) *partial_size = partial;
    return items;
}

class Mano final : public Optimizer {
  public:
    Mano(const Hyper& h, const Hyper& adamw, std::vector<OptimParam> params)
        : cfg_(mano_config_from(h)), all_(params) {
        std::vector<OptimParam> rest;
        for (auto& p : params) {
            if (is_hidden_matrix(p))
                hidden_.push_back(p);
            else
                rest.push_back(p);
        }
        buf_.assign(total_numel(hidden_), 0.0f);
        std::size_t off = 0;
        for (const auto& p : hidden_) {
            buf_offset_.push_back(off);
            off += p.numel();
        }
        std::size_t partial = 0;
        items_[0] = mano_items(hidden_, 0, &partial);
        items_[1] = mano_items(hidden_, 1, nullptr);
        partial_.assign(partial, 0.0);
        std::size_t coef = 0;
        for (const auto& p : hidden_) {
            coef_offset_.push_back(coef);
            coef += static_cast<std::size_t>(p.shape[1]) * 2;
        }
        coef_.assign(coef, 0.0f);
        // The first block of each matrix, for the coefficient pass.
        for (std::size_t it = 0; it < items_[0].size(); ++it)
            if (it == 0 || items_[0][it].param != items_[0][it - 1].param)
                first_block_.push_back(it);
        first_block_.push_back(items_[0].size());
        for (const auto& item : items_[0]) split_ = split_ || !item.whole;
        adamw_ = std::make_unique<AdamWGroup>("adamw", adamw_config_from(adamw), std::move(rest));
    }

    const std::string& name() const override { return name_; }
    long steps_taken() const override { return step_; }
    double last_lr() const override { return last_lr_; }

    void step(double lr_factor) override {
        Timer t;
        check_lr_factor(name_, lr_factor, step_ + 1);
        const double lr = cfg_.lr * lr_factor;
        const int axis = static_cast<int>(step_ % 2);  // the reference's dim = steps % 2
        const float decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        std::vector<ManoStep> steps;
        for (const auto& p : hidden_) {
            const int n = axis == 0 ? p.shape[0] : p.shape[1];
            steps.push_back({static_cast<float>(cfg_.momentum), cfg_.v2, cfg_.eps, decay,
                             lr * 0.2 * std::sqrt(static_cast<double>(n))});
        }
        if (cfg_.nesterov)
            update<true>(axis, steps);
        else
            update<false>(axis, steps);
        ++step_;
        last_lr_ = lr;
        adamw_->step(lr_factor);
        timing_ = {t.seconds(), 0.0};
    }

    std::vector<OptimStateTensor> state_tensors() override {
        std::vector<OptimStateTensor> out;
        append_scalar(out, "mano.step", &step_);
        append_param_state(out, "mano", hidden_, buf_, "momentum_buffer");
        adamw_->append_state(out);
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        for (const auto& p : all_)
            out.push_back({p.name, p.role, p.shape, is_hidden_matrix(p) ? "Mano" : "AdamW"});
        return out;
    }

  private:
    std::string name_ = "Mano";
    ManoConfig cfg_;
    std::vector<OptimParam> all_, hidden_;
    std::vector<float> buf_;
    std::vector<std::size_t> buf_offset_;
    std::vector<ManoItem> items_[2];  // work units for column and row normalisation
    std::vector<double> partial_;     // per-block column sums
    std::vector<float> coef_;         // per-matrix κ and step scale of each column
    std::vector<std::size_t> coef_offset_, first_block_;
    bool split_ = false;  // some matrix is column-normalised in blocks (two more loops)

    template <bool kNesterov>
    void update(int axis, const std::vector<ManoStep>& steps) {
        const auto& items = items_[axis];
        const std::size_t n_items = items.size();
#pragma omp parallel
        {
            if (axis == 1) {
#pragma omp for schedule(dynamic, 1)
                for (std::size_t it = 0; it < n_items; ++it) {
                    const ManoItem& item = items[it];
                    const OptimParam& p = hidden_[static_cast<std::size_t>(item.param)];
                    float* buf = buf_.data() + buf_offset_[static_cast<std::size_t>(item.param)];
                    mano_rows<kNesterov>(p.value, p.grad, buf, item.begin, item.begin + item.count,
                                         p.shape[1], steps[static_cast<std::size_t>(item.param)]);
                }
            } else {
#pragma omp for schedule(dynamic, 1)
                for (std::size_t it = 0; it < n_items; ++it) {
                    const ManoItem& item = items[it];
                    const std::size_t q = static_cast<std::size_t>(item.param);
                    const OptimParam& p = hidden_[q];
                    const int C = p.shape[1];
                    double* part = partial_.data() + item.partial;
                    float* buf = buf_.data() + buf_offset_[q];
                    mano_cols_sums<kNesterov>(p.value, p.grad, buf, item.begin,
                                              item.begin + item.count, C, steps[q].momentum, part,
                                              part + C, part + 2 * C);
                    if (item.whole) {  // the rest now, while the matrix is in cache
                        float* k = coef_.data() + coef_offset_[q];
                        mano_cols_coefficients<kNesterov>(p.value, p.grad, buf, p.shape[0], C, part,
                                                          1, steps[q], k, k + C);
                        mano_cols_update<kNesterov>(p.value, p.grad, buf, 0, p.shape[0], C,
                                                    steps[q].momentum, steps[q].decay, k, k + C);
                    }
                }
                if (split_) {
#pragma omp for schedule(dynamic, 1)
                    for (std::size_t q = 0; q < hidden_.size(); ++q) {
                        const OptimParam& p = hidden_[q];
                        const int C = p.shape[1];
                        const std::size_t b0 = first_block_[q];
                        if (items[b0].whole) continue;
                        float* k = coef_.data() + coef_offset_[q];
                        mano_cols_coefficients<kNesterov>(
                            p.value, p.grad, buf_.data() + buf_offset_[q], p.shape[0], C,
                            partial_.data() + items[b0].partial,
                            static_cast<int>(first_block_[q + 1] - b0), steps[q], k, k + C);
                    }
#pragma omp for schedule(dynamic, 1)
                    for (std::size_t it = 0; it < n_items; ++it) {
                        const ManoItem& item = items[it];
                        if (item.whole) continue;
                        const std::size_t q = static_cast<std::size_t>(item.param);
                        const OptimParam& p = hidden_[q];
                        const int C = p.shape[1];
                        const float* k = coef_.data() + coef_offset_[q];
                        mano_cols_update<kNesterov>(p.value, p.grad, buf_.data() + buf_offset_[q],
                                                    item.begin, item.begin + item.count, C,
                                                    steps[q].momentum, steps[q].decay, k, k + C);
                    }
                }
            }
        }
    }
    std::unique_ptr<AdamWGroup> adamw_;
    long step_ = 0;
    double last_lr_ = 0.0;
};

}  // namespace

ManoConfig mano_config_from(const Hyper& h) {
    ManoConfig c;
    c.lr = h.num("lr");
    c.weight_decay = h.num("weight_decay");
    c.eps = h.num("eps");
    c.momentum = h.num("momentum");
    c.v2 = h.choice("version") == "2";
    const std::string& nest = h.choice("nesterov");
    c.nesterov = nest == "auto" ? c.v2 : nest == "true";
    if (!(c.lr >= 0.0)) fail("optimizer (Mano): lr must be >= 0, got {}", c.lr);
    if (!(c.eps > 0.0)) fail("optimizer (Mano): eps must be > 0, got {}", c.eps);
    return c;
}

OptimizerInfo mano_info() {
    OptimizerInfo info;
    info.name = "Mano";
    info.description =
        "momentum projected on the tangent space of the oblique manifold, column/row-normalised "
        "on alternate steps";
    info.paper =
        "Gu & Xie, Mano: Restriking Manifold Optimization for LLM Training, arXiv 2601.23000 "
        "(github.com/xie-lab-ml/Mano-Restriking-Manifold-Optimization-for-LLM-Training)";
    info.routes_to_adamw = true;
    info.keys = {
        {"version",
         HyperKind::kChoice,
         std::string("1"),
         "1: mano.py (normalised weights, clamped eps); 2: mano_v2.py",
         {"1", "2"}},
        {"lr", HyperKind::kNumber, 1e-3, "learning rate (times the schedule's factor)", {}},
        {"weight_decay", HyperKind::kNumber, 0.1, "decoupled: W *= 1 - lr*wd (reference: wd)", {}},
        {"momentum", HyperKind::kNumber, 0.95, "buf = momentum*buf + g", {}},
        {"nesterov",
         HyperKind::kChoice,
         std::string("auto"),
         "auto: false for v1, true for v2",
         {"auto", "true", "false"}},
        {"eps", HyperKind::kNumber, 1e-8, "norm floor (v1: clamp, v2: added)", {}},
    };
    info.factory = [](const Hyper& h, const Hyper& adamw, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new Mano(h, adamw, std::move(params)));
    };
    return info;
}

}  // namespace agpt
