#include "optim/cuda_optimizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <utility>
#include <vector>

#include "core/error.h"

#if defined(AGPT_HAVE_CUDA)
#include "core/timer.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/mano.h"
#include "kernels/cuda/newton_schulz.h"
#include "kernels/cuda/optim_elementwise.h"
#include "optim/adamw_group.h"
#include "optim/ademamix.h"
#include "optim/lion.h"
#include "optim/mano.h"
#include "optim/muon.h"
#include "optim/param_state.h"
#include "optim/schedule_free_adamw.h"
#include "optim/sophia.h"
#include "optim/spam.h"
#endif

namespace agpt {

namespace {
constexpr std::array<const char*, 8> kOnCuda = {
    "AdamW", "Muon", "Lion", "AdEMAMix", "SPAM", "ScheduleFreeAdamW", "Mano", "SophiaG"};
}  // namespace

void check_cuda_optimizer(const OptimizerSpec& spec) {
    const std::string& name = optimizer_info(spec.name).name;
    if (std::find(kOnCuda.begin(), kOnCuda.end(), name) == kOnCuda.end())
        fail(
            "optimizer.name = {}: not on cuda (training.device = cuda runs the built-in "
            "optimizers only)",
            name);
    const auto ns = spec.hyper.find("ns_precision");
    if (name == "Muon" && ns != spec.hyper.end() && ns->second == HyperValue(std::string("fp64")))
        fail(
            "optimizer.ns_precision = fp64: not on cuda (Newton-Schulz runs through fp32 or bf16 "
            "GEMMs there); use fp32 or bf16");
}

#if defined(AGPT_HAVE_CUDA)

namespace {

// The parameters an optimizer steps (the model's, or a subset: ZeRO-1's owned ones) and the
// caller's hook before each step.
struct DeviceTarget {
    std::vector<ParamView> views;
    std::function<void()> before_update;
};

// What every device optimizer shares: the host mirror, the device state, the hand-over of state
// between them, routing and timing. Subclasses queue the update itself.
class DeviceOptimizer : public Optimizer {
  public:
    DeviceOptimizer(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : model_(model),
          before_update_(std::move(target.before_update)),
          params_(optim_params_from(target.views, model.params_device(), model.grads_device())),
          mirror_(make_optimizer(spec, params_)) {
        std::size_t total = 0;
        for (const auto& t : mirror_->state_tensors())
            if (!t.shape.empty()) {
                if (t.dtype != SafetensorsDtype::F32)
                    fail("optimizer {}: state '{}' is not fp32 (cuda)", name(), t.name);
                offsets_[t.name] = total;
                total += t.numel();
            }
        state_ = cuda::DeviceBuffer<float>(total);
        state_.fill_bytes(0, model.stream());
        for (const auto& t : mirror_->state_tensors()) {
            if (t.shape.empty() && t.dtype == SafetensorsDtype::I64)
                counters_[t.name] = static_cast<long*>(t.data);
            if (t.shape.empty() && t.dtype == SafetensorsDtype::F64)
                reals_[t.name] = static_cast<double*>(t.data);
        }
    }

    const std::string& name() const override { return mirror_->name(); }

    void step(double lr_factor) override {
        Timer t;
        prepare_update();
        hook_seconds_ = 0.0;
        update(lr_factor);
        AGPT_CUDA_CHECK(cudaStreamSynchronize(model_.stream()));  // the update's time, not queueing
        timing_ = {t.seconds() - hook_seconds_, hook_seconds_};
    }
    double last_lr() const override { return last_lr_; }

    // Host copies of the device state (the mirror's storage); whatever is written there before
    // the next step() is uploaded by it.
    std::vector<OptimStateTensor> state_tensors() override {
        auto out = mirror_->state_tensors();
        if (!handed_out_) {
            for (const auto& s : out)
                if (!s.shape.empty())
                    AGPT_CUDA_CHECK(cudaMemcpyAsync(s.data, device_slice(s.name), s.nbytes(),
                                                    cudaMemcpyDeviceToHost, model_.stream()));
            AGPT_CUDA_CHECK(cudaStreamSynchronize(model_.stream()));
            handed_out_ = true;
        }
        return out;
    }

    std::vector<RoutingEntry> describe_routing() const override {
        auto out = mirror_->describe_routing();
        for (auto& r : out) r.optimizer += " (cuda)";
        return out;
    }

  protected:
    virtual void update(double lr_factor) = 0;

    // Before the device parameters or state change: the caller's hook, then whatever the
    // mirror holds that the device has not seen.
    void prepare_update() {
        if (before_update_) before_update_();
        if (!handed_out_) return;
        for (const auto& s : mirror_->state_tensors())
            if (!s.shape.empty())
                AGPT_CUDA_CHECK(cudaMemcpyAsync(device_slice(s.name), s.data, s.nbytes(),
                                                cudaMemcpyHostToDevice, model_.stream()));
        handed_out_ = false;
    }
    // Where a state tensor of the mirror lives on the device.
    virtual float* device_slice(const std::string& tensor) { return state(tensor); }

    // The device slice of a per-parameter state tensor.
    float* state(const std::string& tensor) {
        const auto it = offsets_.find(tensor);
        if (it == offsets_.end()) fail("optimizer {}: no state '{}' (cuda)", name(), tensor);
        return state_.data() + it->second;
    }
    // A step counter of the mirror (load_state writes it there).
    long& counter(const std::string& scalar) const {
        const auto it = counters_.find(scalar);
        if (it == counters_.end()) fail("optimizer {}: no counter '{}' (cuda)", name(), scalar);
        return *it->second;
    }
    double& real(const std::string& scalar) const {
        const auto it = reals_.find(scalar);
        if (it == reals_.end()) fail("optimizer {}: no scalar '{}' (cuda)", name(), scalar);
        return *it->second;
    }
    // The device slices "<prefix>.<param>.<suffix>" of every parameter of `group`, which the
    // mirror lays out one after another in the group's order (so contiguous_runs(group)'s state
    // offsets index them): the first one's address, null for an empty group.
    float* slices(const std::vector<OptimParam>& group, const std::string& prefix,
                  const std::string& suffix) {
        if (group.empty()) return nullptr;
        float* base = state(prefix + "." + group.front().name + "." + suffix);
        std::size_t off = 0;
        for (const auto& p : group) {
            if (state(prefix + "." + p.name + "." + suffix) != base + off)
                fail("optimizer {}: state of {} is not laid out in parameter order (cuda)", name(),
                     p.name);
            off += p.numel();
        }
        return base;
    }
    // The bf16 copy of the parameters starting at `value` (null in fp32 mode).
    cuda::bf16* bf16_of(const float* value) {
        cuda::bf16* b = model_.bf16_params_device();
        return b ? b + (value - model_.params_device()) : nullptr;
    }
    cudaStream_t stream() const { return model_.stream(); }

    // The spec's [optimizer] keys checked and completed with the defaults.
    static Hyper hyper(const OptimizerSpec& spec) {
        const OptimizerInfo& info = optimizer_info(spec.name);
        return Hyper("optimizer (" + info.name + ")", info.keys, spec.hyper);
    }

    // AdamW over a group (optim/adamw_group.h): state "adamw.step", "adamw.<param>.exp_avg",
    // ".exp_avg_sq". AdamW itself, and what the matrix optimizers route to it.
    struct AdamWRuns {
        AdamWConfig cfg;
        std::vector<ParamRun> runs;
        float* m = nullptr;
        float* v = nullptr;
        long* step = nullptr;
    };
    AdamWRuns adamw_group(const AdamWConfig& cfg, const std::vector<OptimParam>& group) {
        AdamWRuns g;
        g.cfg = cfg;
        g.step = &counter("adamw.step");
        g.runs = contiguous_runs(group);  // none: the group still counts its steps, as on the CPU
        g.m = slices(group, "adamw", "exp_avg");
        g.v = slices(group, "adamw", "exp_avg_sq");
        return g;
    }
    // One AdamW step of the group; returns its learning rate.
    double step_adamw(AdamWRuns& g, double lr_factor) {
        check_lr_factor("adamw", lr_factor, *g.step + 1);
        ++*g.step;
        const double lr = g.cfg.lr * lr_factor;
        const cuda::AdamWStep s{lr,        g.cfg.beta1,        g.cfg.beta2,
                                g.cfg.eps, g.cfg.weight_decay, *g.step};
        for (const auto& r : g.runs)
            cuda::adamw_update(r.value, r.grad, g.m + r.state_offset, g.v + r.state_offset, r.n, s,
                               bf16_of(r.value), stream());
        return lr;
    }

    // The matrix optimizers' parameters: the hidden matrices with their momentum slices
    // "<prefix>.<param>.momentum_buffer", and an AdamW of [optimizer.adamw] for the rest.
    struct MatrixSplit {
        std::vector<OptimParam> hidden;
        std::vector<float*> momentum;
        AdamWRuns adamw;
    };
    MatrixSplit split_matrices(const OptimizerSpec& spec, const std::string& prefix) {
        MatrixSplit m;
        std::vector<OptimParam> rest;
        for (const auto& p : params_) {
            if (!is_hidden_matrix(p)) {
                rest.push_back(p);
                continue;
            }
            m.hidden.push_back(p);
            m.momentum.push_back(state(prefix + "." + p.name + ".momentum_buffer"));
        }
        m.adamw = adamw_group(
            adamw_config_from(Hyper("optimizer.adamw", routed_adamw_keys(), spec.adamw)), rest);
        return m;
    }

    GpuModel& model_;
    std::function<void()> before_update_;
    std::vector<OptimParam> params_;  // device pointers
    std::unique_ptr<Optimizer> mirror_;
    double last_lr_ = 0.0;
    double hook_seconds_ = 0.0;  // of the last step (SophiaG's Hessian hook)

  private:
    cuda::DeviceBuffer<float> state_;
    std::map<std::string, std::size_t> offsets_;
    std::map<std::string, long*> counters_;
    std::map<std::string, double*> reals_;
    bool handed_out_ = false;  // the mirror holds state the device must get back
};

class CudaAdamW final : public DeviceOptimizer {
  public:
    CudaAdamW(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          group_(adamw_group(adamw_config_from(hyper(spec)), params_)) {}
    long steps_taken() const override { return *group_.step; }

  private:
    void update(double lr_factor) override { last_lr_ = step_adamw(group_, lr_factor); }
    AdamWRuns group_;
};

class CudaMuon final : public DeviceOptimizer {
  public:
    CudaMuon(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          cfg_(muon_config_from(hyper(spec))),
          ns_bf16_(cfg_.ns_precision == MuonConfig::NsPrecision::bf16 ||
                   model.precision() == GpuPrecision::bf16),
          split_(split_matrices(spec, "muon")),
          blas_(model.stream()) {
        std::size_t max_numel = 0, max_scratch = 0;
        for (const auto& p : split_.hidden) {
            max_numel = std::max(max_numel, p.numel());
            max_scratch = std::max(
                max_scratch, cuda::newton_schulz_scratch_bytes(p.shape[0], p.shape[1], ns_bf16_));
        }
        update_ = cuda::DeviceBuffer<float>(max_numel);
        scratch_ = cuda::DeviceBuffer<unsigned char>(max_scratch);
    }
    long steps_taken() const override { return counter("muon.step"); }

  private:
    void update(double lr_factor) override {
        long& step = counter("muon.step");
        check_lr_factor(name(), lr_factor, step + 1);
        const double lr = cfg_.lr * lr_factor;
        const auto decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        const auto w_buf = static_cast<float>(1.0 - cfg_.momentum);
        const auto w_nest = static_cast<float>(cfg_.momentum);
        float* u = update_.data();
        for (std::size_t i = 0; i < split_.hidden.size(); ++i) {
            const OptimParam& p = split_.hidden[i];
            const int A = p.shape[0], B = p.shape[1];
            cuda::muon_momentum(split_.momentum[i], p.grad, u, p.numel(), w_buf, w_nest,
                                cfg_.nesterov, stream());
            cuda::newton_schulz(blas_, u, u, A, B, cfg_.coef, cfg_.ns_steps, cfg_.eps, ns_bf16_,
                                scratch_.data());
            const double ratio = cfg_.match_rms_adamw
                                     ? 0.2 * std::sqrt(static_cast<double>(std::max(A, B)))
                                     : std::sqrt(std::max(1.0, static_cast<double>(A) / B));
            cuda::decayed_update(p.value, u, p.numel(), decay, static_cast<float>(-(lr * ratio)),
                                 bf16_of(p.value), stream());
        }
        ++step;
        last_lr_ = lr;
        step_adamw(split_.adamw, lr_factor);
    }

    MuonConfig cfg_;
    bool ns_bf16_;  // Newton-Schulz in bf16: asked for, or the model's precision
    MatrixSplit split_;
    cuda::Blas blas_;
    cuda::DeviceBuffer<float> update_;
    cuda::DeviceBuffer<unsigned char> scratch_;
};

class CudaMano final : public DeviceOptimizer {
  public:
    CudaMano(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          cfg_(mano_config_from(hyper(spec))),
          split_(split_matrices(spec, "mano")) {
        std::size_t scratch_bytes = 0;
        for (const auto& p : split_.hidden)
            scratch_bytes =
                std::max(scratch_bytes, cuda::mano_scratch_bytes(p.shape[0], p.shape[1]));
        scratch_ = cuda::DeviceBuffer<unsigned char>(scratch_bytes);
    }
    long steps_taken() const override { return counter("mano.step"); }

  private:
    void update(double lr_factor) override {
        long& step = counter("mano.step");
        check_lr_factor(name(), lr_factor, step + 1);
        const double lr = cfg_.lr * lr_factor;
        const int axis = static_cast<int>(step % 2);  // the reference's dim = steps % 2
        cuda::ManoStep s;
        s.momentum = static_cast<float>(cfg_.momentum);
        s.v2 = cfg_.v2;
        s.nesterov = cfg_.nesterov;
        s.eps = cfg_.eps;
        s.decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        for (std::size_t i = 0; i < split_.hidden.size(); ++i) {
            const OptimParam& p = split_.hidden[i];
            const int n = axis == 0 ? p.shape[0] : p.shape[1];
            s.scale = lr * 0.2 * std::sqrt(static_cast<double>(n));
            cuda::mano_update(p.value, p.grad, split_.momentum[i], p.shape[0], p.shape[1], axis, s,
                              bf16_of(p.value), scratch_.data(), stream());
        }
        ++step;
        last_lr_ = lr;
        step_adamw(split_.adamw, lr_factor);
    }

    ManoConfig cfg_;
    MatrixSplit split_;
    cuda::DeviceBuffer<unsigned char> scratch_;
};

class CudaLion final : public DeviceOptimizer {
  public:
    CudaLion(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          runs_(contiguous_runs(params_)),
          m_(slices(params_, "lion", "exp_avg")),
          cfg_(lion_config_from(hyper(spec))) {}
    long steps_taken() const override { return counter("lion.step"); }

  private:
    void update(double lr_factor) override {
        long& step = counter("lion.step");
        check_lr_factor(name(), lr_factor, step + 1);
        const double lr = cfg_.lr * lr_factor;
        cuda::LionStep s;
        s.decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        s.beta1 = static_cast<float>(cfg_.beta1);
        s.one_minus_beta1 = static_cast<float>(1.0 - cfg_.beta1);
        s.beta2 = static_cast<float>(cfg_.beta2);
        s.one_minus_beta2 = static_cast<float>(1.0 - cfg_.beta2);
        s.neg_lr = static_cast<float>(-lr);
        for (const auto& r : runs_)
            cuda::lion_update(r.value, r.grad, m_ + r.state_offset, r.n, s, bf16_of(r.value),
                              stream());
        ++step;
        last_lr_ = lr;
    }

    std::vector<ParamRun> runs_;
    float* m_;
    LionConfig cfg_;
};

class CudaAdEMAMix final : public DeviceOptimizer {
  public:
    CudaAdEMAMix(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          runs_(contiguous_runs(params_)),
          m1_(slices(params_, "ademamix", "exp_avg_fast")),
          m2_(slices(params_, "ademamix", "exp_avg_slow")),
          v_(slices(params_, "ademamix", "exp_avg_sq")),
          cfg_(ademamix_config_from(hyper(spec))) {}
    long steps_taken() const override { return counter("ademamix.step"); }

  private:
    void update(double lr_factor) override {
        long& step = counter("ademamix.step");
        check_lr_factor(name(), lr_factor, step + 1);
        const long t = step + 1;
        const double lr = cfg_.lr * lr_factor;
        const double beta3 = ademamix_beta3(t, cfg_.beta1, cfg_.beta3, cfg_.beta3_warmup);
        cuda::AdEMAMixStep s;
        s.beta1 = static_cast<float>(cfg_.beta1);
        s.one_minus_beta1 = static_cast<float>(1.0 - cfg_.beta1);
        s.beta2 = static_cast<float>(cfg_.beta2);
        s.one_minus_beta2 = static_cast<float>(1.0 - cfg_.beta2);
        s.beta3 = static_cast<float>(beta3);
        s.one_minus_beta3 = static_cast<float>(1.0 - beta3);
        s.sqrt_bc2 =
            static_cast<float>(std::sqrt(1.0 - std::pow(cfg_.beta2, static_cast<double>(t))));
        s.bc1 = static_cast<float>(1.0 - std::pow(cfg_.beta1, static_cast<double>(t)));
        s.alpha = static_cast<float>(ademamix_alpha(t, cfg_.alpha, cfg_.alpha_warmup));
        s.eps = static_cast<float>(cfg_.eps);
        s.weight_decay = static_cast<float>(cfg_.weight_decay);
        s.neg_lr = static_cast<float>(-lr);
        s.fast = cfg_.beta1 != 0.0;  // β1 = 0: the reference uses g itself
        for (const auto& r : runs_) {
            const std::size_t o = r.state_offset;
            cuda::ademamix_update(r.value, r.grad, m1_ + o, m2_ + o, v_ + o, r.n, s,
                                  bf16_of(r.value), stream());
        }
        step = t;
        last_lr_ = lr;
    }

    std::vector<ParamRun> runs_;
    float *m1_ = nullptr, *m2_ = nullptr, *v_ = nullptr;
    AdEMAMixConfig cfg_;
};

class CudaSpam final : public DeviceOptimizer {
  public:
    CudaSpam(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          runs_(contiguous_runs(params_)),
          m_(slices(params_, "spam", "exp_avg")),
          v_(slices(params_, "spam", "exp_avg_sq")),
          cfg_(spam_config_from(hyper(spec))) {}
    long steps_taken() const override { return counter("spam.step"); }

  private:
    void update(double lr_factor) override {
        long& step = counter("spam.step");
        long& warmup_step = counter("spam.warmup_step");
        check_lr_factor(name(), lr_factor, step + 1);
        const long t = step + 1;  // the reference's total_step + 1
        const double lr = cfg_.lr * lr_factor;
        const double scale = spam_warmup_scale(warmup_step, cfg_.warmup_steps);
        const long delta_t = cfg_.delta_t, clip_after = cfg_.grad_accu_steps;
        double step_size = lr;
        if (cfg_.correct_bias) {
            const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t));
            const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t));
            step_size *= std::sqrt(bc2) / bc1;
        }
        cuda::SpamStep s;
        s.beta1 = static_cast<float>(cfg_.beta1);
        s.one_minus_beta1 = static_cast<float>(1.0 - cfg_.beta1);
        s.beta2 = static_cast<float>(cfg_.beta2);
        s.one_minus_beta2 = static_cast<float>(1.0 - cfg_.beta2);
        s.eps = static_cast<float>(cfg_.eps);
        s.theta = static_cast<float>(cfg_.threshold);
        s.neg_step = static_cast<float>(-step_size * scale);
        s.neg_decay = static_cast<float>(-lr * cfg_.weight_decay);
        s.reset = delta_t > 0 && t % delta_t == 0;
        s.clip =
            cfg_.threshold != 0.0 && t >= clip_after && (delta_t == 0 || t % delta_t >= clip_after);
        s.decay = cfg_.weight_decay > 0.0;
        for (const auto& r : runs_)
            cuda::spam_update(r.value, r.grad, m_ + r.state_offset, v_ + r.state_offset, r.n, s,
                              bf16_of(r.value), stream());
        ++step;
        ++warmup_step;
        if (delta_t > 0 && (step + 1) % delta_t == 0) warmup_step = 0;
        last_lr_ = lr;
    }

    std::vector<ParamRun> runs_;
    float *m_ = nullptr, *v_ = nullptr;
    SpamConfig cfg_;
};

// Schedule-Free AdamW: the parameters are y while training and x = lerp(y, z, 1 − 1/β1) in
// eval mode, which stashes y on the device (the mirror's "schedulefree.<param>.y" tensors).
class CudaScheduleFree final : public DeviceOptimizer {
  public:
    CudaScheduleFree(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          runs_(contiguous_runs(params_)),
          z_(slices(params_, "schedulefree", "z")),
          v_(slices(params_, "schedulefree", "exp_avg_sq")),
          stash_(total_numel(params_)),
          cfg_(schedule_free_adamw_config_from(hyper(spec))) {}
    long steps_taken() const override { return counter("schedulefree.k"); }
    bool in_eval_mode() const override { return counter("schedulefree.train_mode") == 0; }

    void eval_mode() override {
        long& train = counter("schedulefree.train_mode");
        if (!train) return;
        prepare_update();
        train = 0;
        if (counter("schedulefree.k") == 0) return;  // no z yet: x = y = the initial parameters
        const auto w = static_cast<float>(1.0 - 1.0 / cfg_.beta1);
        for (const auto& r : runs_)
            cuda::schedule_free_to_x(r.value, z_ + r.state_offset, stash_.data() + r.state_offset,
                                     r.n, w, bf16_of(r.value), stream());
    }
    void train_mode() override {
        long& train = counter("schedulefree.train_mode");
        if (train) return;
        prepare_update();
        train = 1;
        if (counter("schedulefree.k") == 0) return;
        for (const auto& r : runs_)
            AGPT_CUDA_CHECK(cudaMemcpyAsync(r.value, stash_.data() + r.state_offset,
                                            r.n * sizeof(float), cudaMemcpyDeviceToDevice,
                                            stream()));
        model_.params_changed();
    }

  protected:
    void after_scalars_loaded() override {
        const long mode = counter("schedulefree.train_mode");
        if (mode != 0 && mode != 1)
            fail("optimizer ScheduleFreeAdamW: checkpoint mode flag {} is neither 0 nor 1", mode);
    }
    // y of a parameter sits in the stash where its z sits in z's slices.
    float* device_slice(const std::string& tensor) override {
        const std::string suffix = ".y";
        if (tensor.size() < suffix.size() ||
            tensor.compare(tensor.size() - suffix.size(), suffix.size(), suffix) != 0)
            return state(tensor);
        const std::string z = tensor.substr(0, tensor.size() - suffix.size()) + ".z";
        return stash_.data() + (state(z) - z_);
    }

  private:
    void update(double lr_factor) override {
        long& k = counter("schedulefree.k");
        double& weight_sum = real("schedulefree.weight_sum");
        double& lr_max = real("schedulefree.lr_max");
        if (!counter("schedulefree.train_mode"))
            fail(
                "optimizer ScheduleFreeAdamW: step {} called in eval mode (call train_mode() "
                "after validation or checkpointing)",
                k + 1);
        check_lr_factor(name(), lr_factor, k + 1);
        const long warmup = cfg_.warmup_steps;
        const double sched = k < warmup ? static_cast<double>(k + 1) / warmup : 1.0;
        const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(k + 1));
        const double lr = cfg_.lr * lr_factor * sched;
        lr_max = std::max(lr, lr_max);
        const double weight =
            std::pow(static_cast<double>(k + 1), cfg_.r) * std::pow(lr_max, cfg_.weight_lr_power);
        weight_sum += weight;
        const double ckp1 = weight_sum != 0.0 ? weight / weight_sum : 0.0;
        cuda::ScheduleFreeStep s;
        s.beta2 = static_cast<float>(cfg_.beta2);
        s.one_minus_beta2 = static_cast<float>(1.0 - cfg_.beta2);
        s.bc2 = static_cast<float>(bc2);
        s.eps = static_cast<float>(cfg_.eps);
        s.weight_decay = static_cast<float>(cfg_.weight_decay);
        s.decay = cfg_.weight_decay != 0.0;
        s.c = static_cast<float>(ckp1);
        s.y_coef = static_cast<float>(lr * (cfg_.beta1 * (1.0 - ckp1) - 1.0));
        s.lr = static_cast<float>(lr);
        for (const auto& r : runs_) {
            float* z = z_ + r.state_offset;
            // The reference clones the parameters into z at its first step.
            if (k == 0)
                AGPT_CUDA_CHECK(cudaMemcpyAsync(z, r.value, r.n * sizeof(float),
                                                cudaMemcpyDeviceToDevice, stream()));
            cuda::schedule_free_update(r.value, r.grad, z, v_ + r.state_offset, r.n, s,
                                       bf16_of(r.value), stream());
        }
        ++k;
        last_lr_ = lr;
    }

    std::vector<ParamRun> runs_;
    float *z_ = nullptr, *v_ = nullptr;
    cuda::DeviceBuffer<float> stash_;
    ScheduleFreeAdamWConfig cfg_;
};

// SophiaG: the update, then every hessian_interval steps the trainer's hook (which leaves its
// Gauss-Newton-Bartlett estimate in the device gradients, through the cuda model) and the
// Hessian EMA from it.
class CudaSophiaG final : public DeviceOptimizer {
  public:
    CudaSophiaG(const OptimizerSpec& spec, GpuModel& model, DeviceTarget target)
        : DeviceOptimizer(spec, model, std::move(target)),
          runs_(contiguous_runs(params_)),
          m_(slices(params_, "sophiag", "exp_avg")),
          h_(slices(params_, "sophiag", "hessian")),
          cfg_(sophia_config_from(hyper(spec))) {}
    long steps_taken() const override { return counter("sophiag.step"); }
    bool needs_hessian_hook() const override { return true; }
    void set_hessian_hook(HessianHook hook) override { hook_ = std::move(hook); }

  private:
    void update(double lr_factor) override {
        long& step = counter("sophiag.step");
        check_lr_factor(name(), lr_factor, step + 1);
        const bool hessian_due = (step + 1) % cfg_.hessian_interval == 0;
        if (hessian_due && !hook_)
            fail(
                "optimizer SophiaG: step {} needs a Hessian estimate but no hook is set "
                "(set_hessian_hook)",
                step + 1);
        const double lr = cfg_.lr * lr_factor;
        cuda::SophiaStep s;
        s.decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
        s.beta1 = static_cast<float>(cfg_.beta1);
        s.one_minus_beta1 = static_cast<float>(1.0 - cfg_.beta1);
        s.rho_bs = static_cast<float>(cfg_.rho * cfg_.bs);  // Python folds ρ·bs first
        s.neg_lr = static_cast<float>(-lr);
        for (const auto& r : runs_)
            cuda::sophia_update(r.value, r.grad, m_ + r.state_offset, h_ + r.state_offset, r.n, s,
                                bf16_of(r.value), stream());
        ++step;
        last_lr_ = lr;
        if (!hessian_due) return;
        Timer t;
        hook_();
        hook_seconds_ = t.seconds();
        for (const auto& r : runs_)
            cuda::sophia_hessian_ema(h_ + r.state_offset, r.grad, r.n,
                                     static_cast<float>(cfg_.beta2),
                                     static_cast<float>(1.0 - cfg_.beta2), stream());
    }

    std::vector<ParamRun> runs_;
    float *m_ = nullptr, *h_ = nullptr;
    SophiaConfig cfg_;
    HessianHook hook_;
};

}  // namespace

std::unique_ptr<Optimizer> make_device_optimizer(const OptimizerSpec& spec, GpuModel& model,
                                                 std::function<void()> before_update) {
    return make_device_optimizer(spec, model, model.param_views(), std::move(before_update));
}

std::unique_ptr<Optimizer> make_device_optimizer(const OptimizerSpec& spec, GpuModel& model,
                                                 const std::vector<ParamView>& views,
                                                 std::function<void()> before_update) {
    check_cuda_optimizer(spec);
    DeviceTarget target;
    target.views = views;
    target.before_update = std::move(before_update);
    const OptimizerInfo& info = optimizer_info(spec.name);
    if (info.name == "AdamW") return std::make_unique<CudaAdamW>(spec, model, std::move(target));
    if (info.name == "Muon") return std::make_unique<CudaMuon>(spec, model, std::move(target));
    if (info.name == "Mano") return std::make_unique<CudaMano>(spec, model, std::move(target));
    if (info.name == "SophiaG")
        return std::make_unique<CudaSophiaG>(spec, model, std::move(target));
    if (info.name == "Lion") return std::make_unique<CudaLion>(spec, model, std::move(target));
    if (info.name == "AdEMAMix")
        return std::make_unique<CudaAdEMAMix>(spec, model, std::move(target));
    if (info.name == "SPAM") return std::make_unique<CudaSpam>(spec, model, std::move(target));
    if (info.name == "ScheduleFreeAdamW")
        return std::make_unique<CudaScheduleFree>(spec, model, std::move(target));
    fail("optimizer.name = {}: not on cuda yet", info.name);
}

#endif  // AGPT_HAVE_CUDA

}  // namespace agpt
