#include "train/cuda_training.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/timer.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "optim/grad_clip.h"

#if defined(AGPT_HAVE_CUDA)
#include "dist/nccl_communicator.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "model/gpu/transformer_gpu.h"
#include "model/model_zoo.h"
#include "optim/adamw_group.h"
#include "optim/param_state.h"
#endif

namespace agpt {

void check_cuda_training(const JobConfig& cfg, int ranks) {
    if (cfg.model.name != "agpt")
        fail(
            "model.name = {}: not on cuda yet (training.device = cuda trains the agpt family's "
            "plain Llama block)",
            cfg.model.name);
    const ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    if (args.mla || args.is_moe())
        fail("model.flavor = {}: MLA and MoE are not on cuda yet ({})", cfg.model.flavor,
             args.describe_switches());
    if (cfg.optimizer.name != "AdamW")
        fail("optimizer.name = {}: not on cuda yet (training.device = cuda has AdamW only)",
             cfg.optimizer.name);
    // Data parallelism runs over NCCL; the other mesh dimensions are CPU only so far.
    const auto& par = cfg.parallelism;
    if (ranks > 1 && par.tensor_parallel_degree > 1)
        fail(
            "parallelism.tensor_parallel_degree = {}: not on cuda yet (cuda runs data parallelism "
            "only; one GPU per rank)",
            par.tensor_parallel_degree);
    if (ranks > 1 && par.expert_parallel_degree > 1)
        fail(
            "parallelism.expert_parallel_degree = {}: not on cuda yet (cuda runs data "
            "parallelism only)",
            par.expert_parallel_degree);
    if (ranks > 1 && par.zero != 0)
        fail(
            "parallelism.zero = {}: not on cuda yet (the cuda AdamW keeps the whole optimizer "
            "state on every GPU); use parallelism.zero = 0",
            par.zero);
#if defined(AGPT_HAVE_CUDA)
    if (!cuda::device_available())
        fail("training.device = cuda: no CUDA device is visible ({}); use training.device = cpu",
             cuda::query_runtime().error);
#else
    fail(
        "training.device = cuda: this build has no CUDA backend (configure with the CUDA "
        "toolkit installed and AGPT_CUDA on); use training.device = cpu");
#endif
}

double cuda_table_peak_tflops(const std::string& device_name) {
    // Dense bf16 tensor-core peaks from the vendor's data sheets; the more specific name first.
    static const std::pair<const char*, double> kPeaks[] = {
        {"H100 PCIe", 756.0}, {"H100 NVL", 835.0}, {"H100", 989.0}, {"H200", 989.0},
        {"GH200", 989.0},     {"A100", 312.0},     {"L40S", 362.0}, {"A10G", 70.0},
    };
    for (const auto& [name, tflops] : kPeaks)
        if (device_name.find(name) != std::string::npos) return tflops;
    return 0.0;
}

#if defined(AGPT_HAVE_CUDA)

namespace {

// A model on the device behind LanguageModel: the CPU twin `host` (names, initialisation,
// checkpoints; activations for one token only) and the GPU model over the same flat layout.
class CudaModel final : public LanguageModel {
  public:
    CudaModel(std::unique_ptr<LanguageModel> host, std::unique_ptr<GpuModel> gpu)
        : host_(std::move(host)), gpu_(std::move(gpu)) {
        // The device's reports are this model's (set_grads_ready): the same flat layout.
        gpu_->set_grads_ready(
            [this](std::size_t begin, std::size_t end) { grads_ready(begin, end); });
    }

    const std::vector<ParamView>& param_views() const override { return host_->param_views(); }
    std::vector<float>& params() override {
        if (!host_current_) gpu_->download_params(host_->params().data());
        host_current_ = true;
        device_stale_ = true;  // the caller may write: upload before the next device call
        return host_->params();
    }
    // A copy of the device gradients (writes to it do not reach the device).
    std::vector<float>& grads() override {
        gpu_->download_grads(host_->grads().data());
        return host_->grads();
    }
    std::string checkpoint_name(const std::string& view_name) const override {
        return host_->checkpoint_name(view_name);
    }
    int vocab_size() const override { return host_->vocab_size(); }
    long num_params() const override { return host_->num_params(); }
    double flops_per_token(int seq_len) const override { return host_->flops_per_token(seq_len); }
    int max_context() const override { return 0; }
    const ModelArgs* agpt_args() const override { return host_->agpt_args(); }

    void init_weights(const std::string& scheme, uint64_t seed) override {
        host_->init_weights(scheme, seed);
        host_current_ = true;
        device_stale_ = true;
    }
    void zero_grad() override { gpu_->zero_grad(); }
    double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                            double grad_scale) override {
        push_params();
        return gpu_->forward_backward(tokens, targets, B, T, grad_scale);
    }
    double forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) override {
        push_params();
        return gpu_->forward_loss(tokens, targets, B, T);
    }
    void forward_logits(const int32_t* tokens, int B, int T, float* out) override {
        push_params();
        gpu_->forward_logits(tokens, B, T, out);
    }
    void last_logits(const int32_t* tokens, int T, float* out) override {
        const auto V = static_cast<std::size_t>(vocab_size());
        std::vector<float> all(static_cast<std::size_t>(T) * V);
        forward_logits(tokens, 1, T, all.data());
        std::copy(all.end() - static_cast<long>(V), all.end(), out);
    }
    std::size_t activation_bytes() const override { return gpu_->activation_bytes(); }

    void token_logprobs(const int32_t* tokens, const int32_t* targets, int B, int T,
                        double* logprobs) {
        push_params();
        gpu_->token_logprobs(tokens, targets, B, T, logprobs);
    }
    double forward_backward_weighted(const int32_t* tokens, const int32_t* targets,
                                     const float* weights, int B, int T) {
        push_params();
        return gpu_->forward_backward_weighted(tokens, targets, weights, B, T);
    }
    // The CPU twin, current with the device (downloaded only after the device has changed).
    Transformer& sampler() {
        auto* twin = dynamic_cast<Transformer*>(host_.get());
        if (twin == nullptr)
            fail("sampling: the cuda model's CPU twin is not the agpt transformer");
        if (!host_current_) gpu_->download_params(host_->params().data());
        host_current_ = true;
        return *twin;
    }

    double clip_grad_norm(double max_norm) { return gpu_->clip_grad_norm(max_norm); }
    // The device parameters as an optimizer is about to change them; host copies go stale.
    GpuModel& gpu_for_update() {
        push_params();
        host_current_ = false;
        return *gpu_;
    }
    const GpuModel& gpu() const { return *gpu_; }
    GpuModel& gpu() { return *gpu_; }

  private:
    void push_params() {
        if (device_stale_) gpu_->upload_params(host_->params().data());
        device_stale_ = false;
    }

    std::unique_ptr<LanguageModel> host_;
    std::unique_ptr<GpuModel> gpu_;
    bool host_current_ = true;  // host_->params() equals the device's
    bool device_stale_ = true;  // host_->params() may hold values the device has not seen
};

class CudaAdamW final : public Optimizer {
  public:
    CudaAdamW(const AdamWConfig& cfg, CudaModel& model) : cfg_(cfg), model_(model) {
        if (dynamic_cast<const TransformerGpu*>(&model.gpu()) == nullptr)
            fail("optimizer.name = AdamW: the cuda AdamW steps the agpt family's GPU model only");
        std::size_t offset = 0;
        for (const ParamView& v : model.param_views()) {
            // The device keeps m and v in the parameters' flat layout; the CPU AdamW lays its
            // state out in parameter order. They agree when the views tile the buffer in order.
            if (v.offset != offset)
                fail("optimizer: {} is not where the flat layout puts it (cuda AdamW)", v.name);
            OptimParam p;
            p.name = v.name;
            p.role = v.role;
            p.shape = v.shape;
            params_.push_back(std::move(p));
            offset += v.numel();
        }
    }
    const std::string& name() const override { return name_; }
    void step(double lr_factor) override {
        Timer t;
        auto& gpu = static_cast<TransformerGpu&>(model_.gpu_for_update());
        check_lr_factor("adamw", lr_factor, steps_taken() + 1);
        if (handed_out_) {
            gpu.set_adamw_state(m_.data(), v_.data(), steps_);
            handed_out_ = false;
            std::vector<float>().swap(m_);
            std::vector<float>().swap(v_);
        }
        last_lr_ = cfg_.lr * lr_factor;
        gpu.adamw_step(cfg_, last_lr_);
        AGPT_CUDA_CHECK(cudaStreamSynchronize(gpu.stream()));  // the update's time, not queueing
        timing_ = {t.seconds(), 0.0};
    }
    long steps_taken() const override {
        return handed_out_ ? steps_ : transformer().adamw_steps_taken();
    }
    double last_lr() const override { return last_lr_; }
    // Host copies of the device state; whatever is written there before the next step() (a
    // checkpoint load) is uploaded by it.
    std::vector<OptimStateTensor> state_tensors() override {
        const TransformerGpu& gpu = transformer();
        if (!handed_out_) {
            m_.resize(gpu.num_params());
            v_.resize(gpu.num_params());
            gpu.download_adamw_state(m_.data(), v_.data());
            steps_ = gpu.adamw_steps_taken();
            handed_out_ = true;
        }
        std::vector<OptimStateTensor> out;
        append_scalar(out, "adamw.step", &steps_);
        append_param_state(out, "adamw", params_, m_, "exp_avg");
        append_param_state(out, "adamw", params_, v_, "exp_avg_sq");
        return out;
    }
    std::vector<RoutingEntry> describe_routing() const override {
        std::vector<RoutingEntry> out;
        append_routing(out, params_, name_ + " (cuda)");
        return out;
    }

  private:
    const TransformerGpu& transformer() const {
        return static_cast<const TransformerGpu&>(model_.gpu());
    }

    std::string name_ = "AdamW";  // the CPU AdamW's: checkpoints resume on either device
    AdamWConfig cfg_;
    CudaModel& model_;
    std::vector<OptimParam> params_;  // names and shapes only
    std::vector<float> m_, v_;
    long steps_ = 0;
    bool handed_out_ = false;  // m_, v_, steps_ are host copies the device must get back
    double last_lr_ = 0.0;
};

CudaModel& cuda_model_of(LanguageModel& model) {
    auto* m = dynamic_cast<CudaModel*>(&model);
    if (m == nullptr)
        fail("training.device = cuda: the model is not a cuda model (make_cuda_model)");
    return *m;
}

// bf16 GEMMs of growing size, stopping at 4096 or once one takes 20 ms: the best rate seen.
double measure_cuda_gemm_tflops() {
    cuda::Blas blas;
    double best = 0.0;
    for (int n = 256; n <= 4096; n *= 2) {
        const auto elems = static_cast<std::size_t>(n) * n;
        cuda::DeviceBuffer<cuda::bf16> a(elems), b(elems), c(elems);
        a.fill_bytes(0, blas.stream());
        b.fill_bytes(0, blas.stream());
        cuda::gemm<cuda::bf16, cuda::bf16>(blas, false, false, n, n, n, 1.0f, a.data(), n, b.data(),
                                           n, 0.0f, c.data(), n);  // warm-up
        AGPT_CUDA_CHECK(cudaStreamSynchronize(blas.stream()));
        Timer t;
        cuda::gemm<cuda::bf16, cuda::bf16>(blas, false, false, n, n, n, 1.0f, a.data(), n, b.data(),
                                           n, 0.0f, c.data(), n);
        AGPT_CUDA_CHECK(cudaStreamSynchronize(blas.stream()));
        const double s = t.seconds();
        best = std::max(best, 2.0 * n * n * static_cast<double>(n) / s / 1e12);
        if (s > 0.02) break;
    }
    return best;
}

}  // namespace

std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig& cfg, int vocab_size, int max_batch,
                                               int max_seq) {
    ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    if (vocab_size > 0) args.vocab_size = vocab_size;
    return make_cuda_model(cfg, args, max_batch, max_seq);
}

std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig& cfg, const ModelArgs& args,
                                               int max_batch, int max_seq) {
    const GpuPrecision precision =
        cfg.training.mixed_precision_param == "float32" ? GpuPrecision::fp32 : GpuPrecision::bf16;
    return std::make_unique<CudaModel>(
        std::make_unique<Transformer>(args, 1, 1),
        std::make_unique<TransformerGpu>(
            args, max_batch, max_seq, precision, nullptr,
            activation_checkpoint_from(cfg.activation_checkpoint.mode)));
}

std::unique_ptr<Optimizer> make_cuda_optimizer(const JobConfig& cfg, LanguageModel& cuda_model) {
    const OptimizerInfo& info = optimizer_info(cfg.optimizer.name);
    if (info.name != "AdamW")
        fail("optimizer.name = {}: not on cuda yet (training.device = cuda has AdamW only)",
             cfg.optimizer.name);
    const Hyper hyper("optimizer", info.keys, cfg.optimizer.hyper);
    return std::make_unique<CudaAdamW>(adamw_config_from(hyper), cuda_model_of(cuda_model));
}

double clip_model_gradients(LanguageModel& model, double max_norm) {
    if (auto* m = dynamic_cast<CudaModel*>(&model)) return m->clip_grad_norm(max_norm);
    return clip_grad_norm(model.grads().data(), model.grads().size(), max_norm);
}

namespace {

CudaGradientCommunicatorFactory& gradient_communicator_factory() {
    static CudaGradientCommunicatorFactory factory;
    return factory;
}

}  // namespace

void set_cuda_gradient_communicator_factory(CudaGradientCommunicatorFactory factory) {
    gradient_communicator_factory() = std::move(factory);
}

std::unique_ptr<Communicator> make_cuda_gradient_communicator(Communicator& data_ranks,
                                                              LanguageModel& cuda_model) {
    if (const auto& factory = gradient_communicator_factory()) return factory(data_ranks);
    return make_nccl_communicator(data_ranks, cuda_model_of(cuda_model).gpu().stream());
}

std::span<float> cuda_device_grads(LanguageModel& cuda_model) {
    GpuModel& gpu = cuda_model_of(cuda_model).gpu();
    return {gpu.grads_device(), gpu.num_params()};
}

int select_cuda_device(int world_rank) {
    return select_local_cuda_device(world_rank);
}

CudaPeak cuda_peak_tflops() {
    CudaPeak p;
    const cuda::RuntimeInfo info = cuda::query_runtime();
    if (!info.devices.empty()) p.device = info.devices.front().name;
    p.tflops = cuda_table_peak_tflops(p.device);
    p.source = "table";
    if (p.tflops <= 0.0) {
        p.tflops = measure_cuda_gemm_tflops();
        p.source = "measured";
    }
    return p;
}

double cuda_memory_used_gib() {
    std::size_t free_b = 0, total_b = 0;
    AGPT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return static_cast<double>(total_b - free_b) / (1 << 30);
}

#else  // no CUDA backend: check_cuda_training refuses cuda jobs before these are reached

std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig&, int, int, int) {
    fail("training.device = cuda: this build has no CUDA backend");
}
std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig&, const ModelArgs&, int, int) {
    fail("training.device = cuda: this build has no CUDA backend");
}
std::unique_ptr<Optimizer> make_cuda_optimizer(const JobConfig&, LanguageModel&) {
    fail("training.device = cuda: this build has no CUDA backend");
}
double clip_model_gradients(LanguageModel& model, double max_norm) {
    return clip_grad_norm(model.grads().data(), model.grads().size(), max_norm);
}
void set_cuda_gradient_communicator_factory(CudaGradientCommunicatorFactory) {}
std::unique_ptr<Communicator> make_cuda_gradient_communicator(Communicator&, LanguageModel&) {
    fail("training.device = cuda: this build has no CUDA backend");
}
std::span<float> cuda_device_grads(LanguageModel&) {
    fail("training.device = cuda: this build has no CUDA backend");
}
int select_cuda_device(int) {
    fail("training.device = cuda: this build has no CUDA backend");
}
CudaPeak cuda_peak_tflops() {
    fail("training.device = cuda: this build has no CUDA backend");
}
double cuda_memory_used_gib() {
    fail("training.device = cuda: this build has no CUDA backend");
}

#endif

namespace {

Transformer& agpt_transformer(LanguageModel& model) {
    auto* t = dynamic_cast<Transformer*>(&model);
    if (t == nullptr) fail("sft and rl: the model is not the agpt transformer (model.name = agpt)");
    return *t;
}

}  // namespace

void model_token_logprobs(LanguageModel& model, const int32_t* tokens, const int32_t* targets,
                          int B, int T, double* logprobs) {
#if defined(AGPT_HAVE_CUDA)
    if (auto* m = dynamic_cast<CudaModel*>(&model))
        return m->token_logprobs(tokens, targets, B, T, logprobs);
#endif
    agpt_transformer(model).token_logprobs(tokens, targets, B, T, logprobs);
}

double model_forward_backward_weighted(LanguageModel& model, const int32_t* tokens,
                                       const int32_t* targets, const float* weights, int B, int T) {
#if defined(AGPT_HAVE_CUDA)
    if (auto* m = dynamic_cast<CudaModel*>(&model))
        return m->forward_backward_weighted(tokens, targets, weights, B, T);
#endif
    return agpt_transformer(model).forward_backward_weighted(tokens, targets, weights, B, T);
}

Transformer& sampling_transformer(LanguageModel& model) {
#if defined(AGPT_HAVE_CUDA)
    if (auto* m = dynamic_cast<CudaModel*>(&model)) return m->sampler();
#endif
    return agpt_transformer(model);
}

}  // namespace agpt
