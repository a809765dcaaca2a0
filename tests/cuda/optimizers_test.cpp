// The device optimizers (optim/cuda_optimizer.h) against the CPU optimizers make_optimizer
// builds, on the same parameters and the same gradient sequence: a small GpuModel of the test's
// own with an embedding, norms, tall and wide hidden matrices and a head. Parameters after
// every step within 1e-5 (element-wise) or 1e-4 (Muon and Mano, whose GEMMs and slice sums add
// in another order); the state tensors the CPU's, name by name, shape and value; a state that goes
// cuda → cpu → cuda continues exactly as the uninterrupted device optimizer; in bf16 mode the
// model's bf16 copy is exactly the rounded fp32 parameters after every step.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "gpu_parity.h"
#include "kernels/cpu/newton_schulz.h"
#include "kernels/cuda/model_ops.h"
#include "kernels/cuda/newton_schulz.h"
#include "model/gpu/gpu_model.h"
#include "optim/cuda_optimizer.h"

namespace agpt::cuda::test {
namespace {

// Parameters, gradients and the bf16 copy on the device; no forward (the optimizers never ask).
class FlatModel final : public GpuModel {
  public:
    explicit FlatModel(GpuPrecision precision) : precision_(precision) {
        auto add = [&](const std::string& name, const std::string& role, std::vector<int> shape) {
            ParamView v;
            v.name = name;
            v.role = role;
            v.offset = n_;
            v.shape = std::move(shape);
            n_ += v.numel();
            views_.push_back(std::move(v));
        };
        add("tok_embeddings.weight", "embedding", {12, 8});
        add("layers.0.attention_norm.weight", "norm", {8});
        add("layers.0.attention.wq.weight", "attention", {16, 8});  // tall
        add("layers.0.feed_forward.w2.weight", "ffn", {8, 24});     // wide
        add("layers.0.feed_forward.w1.weight", "ffn", {72, 8});     // more rows than a block
        add("norm.weight", "norm", {8});
        add("output.weight", "head", {12, 8});
        params_ = DeviceBuffer<float>(n_);
        grads_ = DeviceBuffer<float>(n_);
        if (precision_ == GpuPrecision::bf16) {
            bf16_ = DeviceBuffer<bf16>(n_);
            bf16_.fill_bytes(0xFF);
        }
    }
    GpuPrecision precision() const override { return precision_; }
    const std::vector<ParamView>& param_views() const override { return views_; }
    std::size_t num_params() const override { return n_; }
    cudaStream_t stream() const override { return nullptr; }
    float* params_device() override { return params_.data(); }
    float* grads_device() override { return grads_.data(); }
    bf16* bf16_params_device() override { return bf16_.size() ? bf16_.data() : nullptr; }
    void params_changed() override {
        if (bf16_.size()) cast_to_bf16(bf16_.data(), params_.data(), n_);
    }
    void upload_params(const float* host) override {
        params_.upload(host);
        params_changed();
        AGPT_CUDA_CHECK(cudaDeviceSynchronize());
    }
    void download_params(float* host) const override {
        AGPT_CUDA_CHECK(cudaDeviceSynchronize());
        params_.download(host);
    }
    void download_grads(float* host) const override { grads_.download(host); }
    void upload_grads(const float* host) { grads_.upload(host); }
    std::vector<float> params() const {
        std::vector<float> p(n_);
        download_params(p.data());
        return p;
    }
    std::vector<float> bf16_copy() const {
        std::vector<bf16> b(n_);
        bf16_.download(b.data());
        std::vector<float> out(n_);
        for (std::size_t i = 0; i < n_; ++i) out[i] = __bfloat162float(b[i]);
        return out;
    }

    void zero_grad() override { grads_.fill_bytes(0); }
    double forward_backward(const int32_t*, const int32_t*, int, int, double) override { unused(); }
    void forward_backward_async(const int32_t*, const int32_t*, int, int, double) override {
        unused();
    }
    double take_loss_sum() override { unused(); }
    double forward_loss(const int32_t*, const int32_t*, int, int) override { unused(); }
    void forward_logits(const int32_t*, int, int, float*) override { unused(); }
    double clip_grad_norm(double) override { unused(); }
    std::size_t state_bytes() const override { return params_.bytes() + grads_.bytes(); }
    std::size_t activation_bytes() const override { return 0; }

  private:
    [[noreturn]] static void unused() { fail("FlatModel: the optimizer tests run no forward"); }
    GpuPrecision precision_;
    std::vector<ParamView> views_;
    std::size_t n_ = 0;
    DeviceBuffer<float> params_, grads_;
    DeviceBuffer<bf16> bf16_;
};

struct Case {
    std::string optimizer;
    std::map<std::string, HyperValue> hyper;
    double tol;  // on each parameter tensor after each step
};

// An owned copy of an optimizer's state, for load_state.
struct SavedState {
    std::map<std::string, std::vector<unsigned char>> bytes;
    std::map<std::string, SavedStateTensor> tensors;
    explicit SavedState(Optimizer& opt) {
        for (const auto& t : opt.state_tensors()) {
            auto& b = bytes[t.name];
            b.assign(static_cast<const unsigned char*>(t.data),
                     static_cast<const unsigned char*>(t.data) + t.nbytes());
            tensors[t.name] = {t.dtype, t.shape, b.data()};
        }
    }
};

std::vector<float> gradients(std::size_t n, int step) {
    Rng rng(7000 + step);
    return random_floats(n, rng, -0.5f, 0.5f);
}

constexpr double kFactors[] = {1.0, 0.5, 0.75, 1.0};

// The same state tensors: names, order, shapes, dtypes; fp32 values within tol, the rest exact.
void expect_same_state(Optimizer& dev, Optimizer& cpu, double tol, const std::string& tag) {
    const auto ts = dev.state_tensors(), cs = cpu.state_tensors();
    ASSERT_EQ(ts.size(), cs.size());
    for (std::size_t i = 0; i < ts.size(); ++i) {
        ASSERT_EQ(ts[i].name, cs[i].name);
        EXPECT_EQ(ts[i].shape, cs[i].shape) << ts[i].name;
        ASSERT_EQ(ts[i].dtype, cs[i].dtype) << ts[i].name;
        ASSERT_EQ(ts[i].nbytes(), cs[i].nbytes()) << ts[i].name;
        if (ts[i].dtype != SafetensorsDtype::F32) {
            EXPECT_EQ(std::memcmp(ts[i].data, cs[i].data, ts[i].nbytes()), 0) << ts[i].name;
            continue;
        }
        const auto* a = static_cast<const float*>(ts[i].data);
        const auto* b = static_cast<const float*>(cs[i].data);
        expect_close(ts[i].name + tag, {a, a + ts[i].numel()}, {b, b + cs[i].numel()}, tol);
    }
}

// The device optimizer against the CPU one over len(kFactors) steps; then the state checks.
// cpu_hyper, when given, replaces the CPU optimizer's hyper-parameters (bf16 Newton–Schulz).
void check_against_cpu(const Case& c, GpuPrecision precision,
                       const std::map<std::string, HyperValue>* cpu_hyper = nullptr) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const std::string tag =
        " " + c.optimizer + (precision == GpuPrecision::bf16 ? " bf16" : " fp32");
    FlatModel gpu(precision);
    const std::size_t n = gpu.num_params();
    Rng rng(6900);
    std::vector<float> cpu_p = random_floats(n, rng), cpu_g(n);
    gpu.upload_params(cpu_p.data());
    OptimizerSpec spec;
    spec.name = c.optimizer;
    spec.hyper = c.hyper;
    OptimizerSpec cpu_spec = spec;
    if (cpu_hyper) cpu_spec.hyper = *cpu_hyper;
    auto cpu =
        make_optimizer(cpu_spec, optim_params_from(gpu.param_views(), cpu_p.data(), cpu_g.data()));
    auto dev = make_device_optimizer(spec, gpu);
    EXPECT_EQ(dev->name(), cpu->name());
    const auto routes = dev->describe_routing(), cpu_routes = cpu->describe_routing();
    ASSERT_EQ(routes.size(), cpu_routes.size());
    for (std::size_t i = 0; i < routes.size(); ++i)
        EXPECT_EQ(routes[i].optimizer, cpu_routes[i].optimizer + " (cuda)") << routes[i].param;

    int step = 0;
    if (cpu->needs_hessian_hook()) {
        ASSERT_TRUE(dev->needs_hessian_hook());
        // The trainer's hook leaves an estimate in the gradients; both get the same one.
        cpu->set_hessian_hook([&] {
            const auto h = gradients(n, 100 + step);
            std::copy(h.begin(), h.end(), cpu_g.begin());
        });
        dev->set_hessian_hook([&] { gpu.upload_grads(gradients(n, 100 + step).data()); });
    }
    for (double factor : kFactors) {
        ++step;
        const auto g = gradients(n, step);
        std::copy(g.begin(), g.end(), cpu_g.begin());  // in place: the optimizer points into it
        gpu.upload_grads(cpu_g.data());
        cpu->step(factor);
        dev->step(factor);
        const auto got = gpu.params();
        for (const ParamView& v : gpu.param_views())
            expect_close(v.name + " step " + std::to_string(step) + tag, slice(got, v),
                         slice(cpu_p, v), c.tol);
        if (precision == GpuPrecision::bf16)
            expect_close("bf16 copy step " + std::to_string(step) + tag, gpu.bf16_copy(),
                         representable<bf16>(got), 0.0);
    }
    EXPECT_EQ(dev->steps_taken(), step);
    EXPECT_DOUBLE_EQ(dev->last_lr(), cpu->last_lr());

    // Evaluation parameters (Schedule-Free's x; the others' own) and the state as a checkpoint
    // records it, in eval mode.
    cpu->eval_mode();
    dev->eval_mode();
    EXPECT_EQ(dev->in_eval_mode(), cpu->in_eval_mode());
    const auto x = gpu.params();
    for (const ParamView& v : gpu.param_views())
        expect_close(v.name + " eval mode" + tag, slice(x, v), slice(cpu_p, v), c.tol);

    expect_same_state(*dev, *cpu, c.tol, tag);
    cpu->train_mode();
    dev->train_mode();
    const auto y = gpu.params();
    for (const ParamView& v : gpu.param_views())
        expect_close(v.name + " train mode" + tag, slice(y, v), slice(cpu_p, v), c.tol);
    if (precision == GpuPrecision::bf16)
        expect_close("bf16 copy train mode" + tag, gpu.bf16_copy(), representable<bf16>(y), 0.0);
}

// cuda → cpu → cuda, as a checkpoint moves (written in eval mode): the device state loaded
// into a CPU optimizer, that one's state into a fresh device optimizer on a copy of the model;
// back in train mode, one more step of both device optimizers gives the same bits.
void check_round_trip(const Case& c) {
    AGPT_REQUIRE_CUDA_DEVICE();
    OptimizerSpec spec;
    spec.name = c.optimizer;
    spec.hyper = c.hyper;
    FlatModel gpu(GpuPrecision::fp32);
    const std::size_t n = gpu.num_params();
    Rng rng(6901);
    const std::vector<float> init = random_floats(n, rng);
    gpu.upload_params(init.data());
    auto dev = make_device_optimizer(spec, gpu);
    for (int step = 1; step <= 2; ++step) {
        const auto g = gradients(n, step);
        gpu.upload_grads(g.data());
        dev->step(1.0);
    }
    dev->eval_mode();
    std::vector<float> cpu_p = gpu.params(), cpu_g(n);
    auto cpu =
        make_optimizer(spec, optim_params_from(gpu.param_views(), cpu_p.data(), cpu_g.data()));
    cpu->load_state(SavedState(*dev).tensors);
    EXPECT_EQ(cpu->steps_taken(), 2);

    FlatModel gpu2(GpuPrecision::fp32);
    gpu2.upload_params(cpu_p.data());
    auto dev2 = make_device_optimizer(spec, gpu2);
    dev2->load_state(SavedState(*cpu).tensors);
    EXPECT_EQ(dev2->steps_taken(), 2);
    dev->train_mode();
    dev2->train_mode();
    const auto g = gradients(n, 3);
    gpu.upload_grads(g.data());
    gpu2.upload_grads(g.data());
    dev->step(1.0);
    dev2->step(1.0);
    EXPECT_EQ(dev2->steps_taken(), 3);
    const auto a = gpu.params(), b = gpu2.params();
    EXPECT_EQ(std::memcmp(a.data(), b.data(), n * sizeof(float)), 0) << c.optimizer;
    EXPECT_NE(std::memcmp(a.data(), cpu_p.data(), n * sizeof(float)), 0)
        << "the step moved nothing";
    const SavedState sa(*dev), sb(*dev2);
    for (const auto& [name, bytes] : sa.bytes) EXPECT_EQ(bytes, sb.bytes.at(name)) << name;
}

const Case kAdamW{"AdamW", {{"lr", 0.05}, {"weight_decay", 0.1}}, kTolFp32};
const Case kLion{"Lion", {{"lr", 0.01}, {"weight_decay", 0.1}}, kTolFp32};
const Case kAdEMAMix{
    "AdEMAMix", {{"lr", 0.05}, {"beta3_warmup", 3.0}, {"alpha_warmup", 2.0}}, kTolFp32};
// lr 0.05: four steps move the weights far beyond rounding.
const Case kMuon{"Muon", {{"lr", 0.05}, {"adjust_lr_fn", std::string("original")}}, kTolFp32Long};
const Case kMuonMatchRms{
    "Muon",
    {{"lr", 0.05}, {"nesterov", 0.0}, {"adjust_lr_fn", std::string("match_rms_adamw")}},
    kTolFp32Long};

// The Newton–Schulz kernel against kernels/cpu/newton_schulz on wide, tall and square
// matrices. fp32: the GEMMs sum in another order (1e-5 measured ~1e-7). bf16 against the CPU's
// bf16 emulation: every GEMM result rounded to bf16 on both sides; a sum near a rounding
// boundary can land one bf16 step apart, which the next iterations carry (1e-2).
TEST(CudaNewtonSchulz, MatchesCpu) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Blas blas;
    const cpu::NsCoefficients coef;
    for (const auto& [rows, cols] : {std::pair{8, 24}, std::pair{24, 8}, std::pair{16, 16}}) {
        for (bool bf16_ns : {false, true}) {
            Rng rng(6950 + rows);
            const auto g = random_floats(static_cast<std::size_t>(rows) * cols, rng);
            std::vector<float> want(g.size());
            cpu::NsScratch<float> cpu_scratch;
            cpu::newton_schulz<float>(g.data(), want.data(), rows, cols, coef, 5, 1e-7, bf16_ns,
                                      cpu_scratch);
            Dev<float> d_g(g);
            auto d_out = Dev<float>::poisoned(g.size());
            DeviceBuffer<unsigned char> scratch(newton_schulz_scratch_bytes(rows, cols, bf16_ns));
            scratch.fill_bytes(0xFF);
            newton_schulz(blas, d_g.ptr(), d_out.ptr(), rows, cols, coef, 5, 1e-7, bf16_ns,
                          scratch.data());
            expect_close("newton_schulz " + std::to_string(rows) + "x" + std::to_string(cols) +
                             (bf16_ns ? " bf16" : " fp32"),
                         d_out.get(), want, bf16_ns ? kTolBf16 : kTolFp32);
        }
    }
}

TEST(CudaOptimizers, AdamWMatchesCpu) {
    check_against_cpu(kAdamW, GpuPrecision::fp32);
    check_against_cpu(kAdamW, GpuPrecision::bf16);
    check_round_trip(kAdamW);
}

TEST(CudaOptimizers, MuonMatchesCpu) {
    check_against_cpu(kMuon, GpuPrecision::fp32);
    check_against_cpu(kMuonMatchRms, GpuPrecision::fp32);
    check_round_trip(kMuon);
}

// bf16 mode: Newton–Schulz through bf16 GEMMs, against the CPU's emulation of torch's bf16
// iteration (ns_precision = bf16). Both round every GEMM result to bf16 but sum in other
// orders, so a result near a rounding boundary may land one bf16 step (2^-8) apart. With the
// orthogonalised update within 1e-2 (CudaNewtonSchulz.MatchesCpu) and four steps moving the
// weights by at most ~1/10 of their norm, the parameters agree within 2e-3 (twice that bound).
TEST(CudaOptimizers, MuonBf16NewtonSchulzNearCpuBf16) {
    auto cpu_hyper = kMuon.hyper;
    cpu_hyper["ns_precision"] = std::string("bf16");
    Case c = kMuon;
    c.tol = 2e-3;
    check_against_cpu(c, GpuPrecision::bf16, &cpu_hyper);
}

// Mano alternates column (odd steps) and row (even steps) normalisation; v1 and v2, each
// with and without Nesterov.
TEST(CudaOptimizers, ManoMatchesCpu) {
    const Case v1{"Mano", {{"lr", 0.05}}, kTolFp32Long};
    const Case v2{"Mano", {{"lr", 0.05}, {"version", std::string("2")}}, kTolFp32Long};
    auto v1_nesterov = v1;
    v1_nesterov.hyper["nesterov"] = std::string("true");
    check_against_cpu(v1, GpuPrecision::fp32);
    check_against_cpu(v1_nesterov, GpuPrecision::fp32);
    check_against_cpu(v2, GpuPrecision::bf16);
    check_round_trip(v2);
}

TEST(CudaOptimizers, LionMatchesCpu) {
    check_against_cpu(kLion, GpuPrecision::fp32);
    check_against_cpu(kLion, GpuPrecision::bf16);
    check_round_trip(kLion);
}

TEST(CudaOptimizers, AdEMAMixMatchesCpu) {
    check_against_cpu(kAdEMAMix, GpuPrecision::fp32);
    auto no_fast = kAdEMAMix;
    no_fast.hyper["beta1"] = 0.0;
    check_against_cpu(no_fast, GpuPrecision::bf16);
    check_round_trip(kAdEMAMix);
}

TEST(CudaOptimizers, SpamMatchesCpu) {
    // Resets every 3 steps, clipping from step 2, a warm-up after each reset, decay.
    const Case spam{"SPAM",
                    {{"lr", 0.05},
                     {"delta_t", 3.0},
                     {"warmup_steps", 2.0},
                     {"grad_accu_steps", 2.0},
                     {"threshold", 1.5},
                     {"weight_decay", 0.1}},
                    kTolFp32};
    check_against_cpu(spam, GpuPrecision::fp32);
    check_against_cpu(spam, GpuPrecision::bf16);
    check_round_trip(spam);
}

TEST(CudaOptimizers, ScheduleFreeAdamWMatchesCpu) {
    const Case sf{"ScheduleFreeAdamW",
                  {{"lr", 0.05}, {"warmup_steps", 2.0}, {"weight_decay", 0.1}, {"r", 1.0}},
                  kTolFp32};
    check_against_cpu(sf, GpuPrecision::fp32);
    check_against_cpu(sf, GpuPrecision::bf16);
    check_round_trip(sf);
}

// The Hessian estimate (the hook's gradients) folded in after steps 2 and 4.
TEST(CudaOptimizers, SophiaGMatchesCpu) {
    const Case sophia{
        "SophiaG", {{"lr", 0.05}, {"hessian_interval", 2.0}, {"bs", 10.0}, {"rho", 0.5}}, kTolFp32};
    check_against_cpu(sophia, GpuPrecision::fp32);
    check_against_cpu(sophia, GpuPrecision::bf16);
}

// ZeRO-1's optimizer: over a subset of the model's views (a norm and two hidden matrices, so
// Muon has both its groups), the CPU optimizer over the same views, state name by name; the
// parameters outside the subset keep their bits.
void check_subset(const Case& c) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const std::string tag = " " + c.optimizer + " over a subset";
    FlatModel gpu(GpuPrecision::fp32);
    const std::size_t n = gpu.num_params();
    const std::vector<ParamView> owned(gpu.param_views().begin() + 1,
                                       gpu.param_views().begin() + 4);
    Rng rng(6902);
    const std::vector<float> init = random_floats(n, rng);
    std::vector<float> cpu_p = init, cpu_g(n);
    gpu.upload_params(init.data());
    OptimizerSpec spec;
    spec.name = c.optimizer;
    spec.hyper = c.hyper;
    auto cpu = make_optimizer(spec, optim_params_from(owned, cpu_p.data(), cpu_g.data()));
    auto dev = make_device_optimizer(spec, gpu, owned);
    for (int step = 1; step <= 3; ++step) {
        const auto g = gradients(n, step);
        std::copy(g.begin(), g.end(), cpu_g.begin());
        gpu.upload_grads(cpu_g.data());
        cpu->step(1.0);
        dev->step(1.0);
    }
    const auto got = gpu.params();
    for (const ParamView& v : gpu.param_views()) {
        const bool is_owned = std::any_of(owned.begin(), owned.end(),
                                          [&](const ParamView& o) { return o.name == v.name; });
        if (is_owned)
            expect_close(v.name + tag, slice(got, v), slice(cpu_p, v), c.tol);
        else
            EXPECT_EQ(slice(got, v), slice(init, v)) << v.name << tag << ": not owned, moved";
    }
    expect_same_state(*dev, *cpu, c.tol, tag);
}

TEST(CudaOptimizers, OverASubsetOfTheViewsMatchesCpu) {
    check_subset(kAdamW);
    check_subset(kMuon);
}

TEST(CudaOptimizers, RefusesNsPrecisionFp64) {
    AGPT_REQUIRE_CUDA_DEVICE();
    FlatModel gpu(GpuPrecision::fp32);
    OptimizerSpec spec;
    spec.name = "Muon";
    spec.hyper["ns_precision"] = std::string("fp64");
    try {
        make_device_optimizer(spec, gpu);
        ADD_FAILURE() << "ns_precision = fp64 accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("optimizer.ns_precision = fp64"), std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace agpt::cuda::test
