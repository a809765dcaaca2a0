#include "train/cuda_training.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/timer.h"
#include "dist/zero.h"
#include "model/mla.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "optim/cuda_optimizer.h"
#include "optim/grad_clip.h"

#if defined(AGPT_HAVE_CUDA)
#include "dist/communicator.h"
#include "dist/nccl_communicator.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/model_ops.h"
#include "model/gpt2.h"
#include "model/gpu/gpt2_gpu.h"
#include "model/gpu/transformer_gpu.h"
#include "model/model_zoo.h"
#include "model/transformer.h"
#endif

namespace agpt {

void check_cuda_training(const JobConfig& cfg) {
    if (cfg.model.name != "agpt" && cfg.model.name != "gpt2")
        fail(
            "model.name = {}: not on cuda yet (training.device = cuda trains the agpt and gpt2 "
            "families)",
            cfg.model.name);
    if (cfg.model.name == "agpt") {
        const ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
        if (args.mla)
            if (const std::string problem = mla_cuda_head_problem(mla_shape_of(args));
                !problem.empty())
                fail("model.flavor = {}: {}", cfg.model.flavor, problem);
    }
    check_cuda_optimizer(cfg.optimizer.spec());
    // Data parallelism (ZeRO-0 or 1), tensor and expert parallelism run over NCCL, within the
    // mesh's own limits (resolve_parallel_mesh).
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
    // Dense bf16 tensor-core peaks: half the data sheets' "with sparsity" figures (H100 SXM and
    // the H200/GH200 on the same SMs and clocks: the Hopper whitepaper's 989.4); the more specific
    // name first.
    static const std::pair<const char*, double> kPeaks[] = {
        {"H100 PCIe", 756.5}, {"H100 NVL", 835.5}, {"H100", 989.4},
        {"H200 NVL", 835.5},  {"H200", 989.4},     {"GH200", 989.4},
        {"A100", 312.0},      {"L40S", 362.05},    {"A10G", 70.0},
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
    int max_context() const override { return host_->max_context(); }
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
    // MoE: the device model's loads (once summed over ranks, the sums) and balance loss; the
    // expert-bias step after each optimizer step, on the device's parameters.
    std::vector<std::vector<double>> expert_loads() const override {
        return summed_loads_.empty() ? gpu_->expert_loads() : summed_loads_;
    }
    void sum_expert_loads(Communicator& comm) override {
        std::vector<std::vector<double>> loads = gpu_->expert_loads();
        for (std::vector<double>& load : loads)
            comm.all_reduce(load.data(), load.size(), ReduceOp::Sum);
        summed_loads_ = std::move(loads);
    }
    double moe_aux_loss() const override { return gpu_->moe_aux_loss(); }
    void after_optimizer_step() override {
        const ModelArgs* args = agpt_args();
        if (args == nullptr || !args->is_moe()) return;
        push_params();
        gpu_->update_expert_bias(expert_loads(), args->load_balance_coeff);
        summed_loads_.clear();
        host_current_ = false;
    }

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
    Transformer& set_expert_parallel(Communicator* host_ep, Communicator* device_ep) {
        auto* twin = dynamic_cast<Transformer*>(host_.get());
        auto* gpu = dynamic_cast<TransformerGpu*>(gpu_.get());
        if (twin == nullptr || gpu == nullptr)
            fail("parallelism.expert_parallel_degree: expert parallelism needs the agpt family");
        twin->set_expert_parallel(host_ep);
        gpu->set_expert_parallel(device_ep);
        host_current_ = true;
        device_stale_ = true;
        return *twin;
    }
    Transformer& set_tensor_parallel(const TensorParallel& host_tp, Communicator* device_tp) {
        auto* gpu = dynamic_cast<TransformerGpu*>(gpu_.get());
        const ModelArgs* args = agpt_args();
        if (gpu == nullptr || args == nullptr)
            fail("parallelism.tensor_parallel_degree: tensor parallelism needs the agpt family");
        TensorParallel device = host_tp;
        device.group = device_tp;
        auto twin = std::make_unique<Transformer>(*args, 1, 1, ActivationCheckpoint::none, host_tp);
        gpu->set_tensor_parallel(device);
        host_ = std::move(twin);
        host_current_ = true;
        device_stale_ = true;
        return static_cast<Transformer&>(*host_);
    }
    const LanguageModel& layout_model() const override { return *host_; }
    // The device parameters as an optimizer is about to change them; host copies go stale.
    GpuModel& gpu_for_update() {
        push_params();
        host_current_ = false;
        return *gpu_;
    }
    const GpuModel& gpu() const { return *gpu_; }
    GpuModel& gpu() { return *gpu_; }

    // Σ ‖grads[range]‖² over the ranges: each range's norm by the device kernel into a slot of
    // its own, then one copy back (sharded clipping, every step under TP or EP).
    double squared_grad_norm(const GradientRanges& ranges) {
        if (ranges.empty()) return 0.0;
        std::size_t largest = 0;
        for (const auto& [offset, count] : ranges) largest = std::max(largest, count);
        if (range_norms_.size() < ranges.size())
            range_norms_ = cuda::DeviceBuffer<double>(ranges.size());
        if (norm_scratch_.size() < cuda::grad_norm_scratch_bytes(largest))
            norm_scratch_ =
                cuda::DeviceBuffer<unsigned char>(cuda::grad_norm_scratch_bytes(largest));
        const cudaStream_t stream = gpu_->stream();
        for (std::size_t i = 0; i < ranges.size(); i++)
            cuda::grad_norm_clip(gpu_->grads_device() + ranges[i].first, ranges[i].second, 0.0,
                                 range_norms_.data() + i, norm_scratch_.data(), stream);
        std::vector<double> norms(ranges.size());
        AGPT_CUDA_CHECK(cudaMemcpyAsync(norms.data(), range_norms_.data(),
                                        norms.size() * sizeof(double), cudaMemcpyDeviceToHost,
                                        stream));
        AGPT_CUDA_CHECK(cudaStreamSynchronize(stream));
        double sum = 0.0;
        for (const double n : norms) sum += n * n;
        return sum;
    }
    // Scales every gradient as clip_grad_norm would for a gradient of this norm.
    void clip_grads_to_norm(double norm, double max_norm) {
        const cudaStream_t stream = gpu_->stream();
        if (range_norms_.size() == 0) range_norms_ = cuda::DeviceBuffer<double>(1);
        AGPT_CUDA_CHECK(cudaMemcpyAsync(range_norms_.data(), &norm, sizeof norm,
                                        cudaMemcpyHostToDevice, stream));
        cuda::clip_to_norm(gpu_->grads_device(), gpu_->num_params(), range_norms_.data(), max_norm,
                           stream);
        AGPT_CUDA_CHECK(cudaStreamSynchronize(stream));
    }

  private:
    void push_params() {
        if (device_stale_) gpu_->upload_params(host_->params().data());
        device_stale_ = false;
    }

    std::unique_ptr<LanguageModel> host_;
    std::unique_ptr<GpuModel> gpu_;
    bool host_current_ = true;  // host_->params() equals the device's
    bool device_stale_ = true;  // host_->params() may hold values the device has not seen
    std::vector<std::vector<double>> summed_loads_;  // sum_expert_loads' until the bias step
    cuda::DeviceBuffer<double> range_norms_;         // squared_grad_norm's, and the clip's norm
    cuda::DeviceBuffer<unsigned char> norm_scratch_;
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

namespace {

GpuPrecision precision_of(const JobConfig& cfg) {
    return cfg.training.mixed_precision_param == "float32" ? GpuPrecision::fp32
                                                           : GpuPrecision::bf16;
}

}  // namespace

std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig& cfg, int vocab_size, int max_batch,
                                               int max_seq) {
    if (cfg.model.name == "gpt2") {
        // The CPU twin as make_language_model builds it (the flavor's shape, the tokenizer's
        // vocabulary padded to 128) and with its refusals (switches, activation checkpointing).
        auto host =
            make_language_model("gpt2", cfg.model.flavor, cfg.model.switches(), vocab_size, 1, 1,
                                activation_checkpoint_from(cfg.activation_checkpoint.mode));
        const Gpt2Args args = static_cast<const Gpt2&>(*host).args();
        return std::make_unique<CudaModel>(
            std::move(host),
            std::make_unique<Gpt2Gpu>(args, max_batch, max_seq, precision_of(cfg)));
    }
    ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    if (vocab_size > 0) args.vocab_size = vocab_size;
    return make_cuda_model(cfg, args, max_batch, max_seq);
}

std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig& cfg, const ModelArgs& args,
                                               int max_batch, int max_seq) {
    return std::make_unique<CudaModel>(
        std::make_unique<Transformer>(args, 1, 1),
        std::make_unique<TransformerGpu>(
            args, max_batch, max_seq, precision_of(cfg), nullptr,
            activation_checkpoint_from(cfg.activation_checkpoint.mode)));
}

std::unique_ptr<Optimizer> make_cuda_optimizer(const JobConfig& cfg, LanguageModel& cuda_model) {
    return make_cuda_optimizer(cfg, cuda_model, cuda_model.param_views());
}

std::unique_ptr<Optimizer> make_cuda_optimizer(const JobConfig& cfg, LanguageModel& cuda_model,
                                               const std::vector<ParamView>& views) {
    CudaModel& model = cuda_model_of(cuda_model);
    return make_device_optimizer(cfg.optimizer.spec(), model.gpu(), views,
                                 [&model] { model.gpu_for_update(); });
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

namespace {

// ZeroShard's buffers on the device. Everything is queued on the model's stream, where the NCCL
// collectives queue too; only the norm comes back to the host.
class DeviceShardMemory final : public ShardMemory {
  public:
    explicit DeviceShardMemory(cudaStream_t stream) : stream_(stream), norm_(1) {}
    float* allocate(std::size_t n) override {
        cuda::DeviceBuffer<float>& b = blocks_.emplace_back(n);
        b.fill_bytes(0, stream_);
        return b.data();
    }
    void copy(float* dst, const float* src, std::size_t n) override {
        if (n > 0)
            AGPT_CUDA_CHECK(
                cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
    }
    void fill_zero(float* p, std::size_t n) override {
        if (n > 0) AGPT_CUDA_CHECK(cudaMemsetAsync(p, 0, n * sizeof(float), stream_));
    }
    double norm(const float* g, std::size_t n) override {
        const std::size_t bytes = cuda::grad_norm_scratch_bytes(n);
        if (scratch_.size() < bytes) scratch_ = cuda::DeviceBuffer<unsigned char>(bytes);
        // max_norm 0: the norm only, g is not written.
        cuda::grad_norm_clip(const_cast<float*>(g), n, 0.0, norm_.data(), scratch_.data(), stream_);
        AGPT_CUDA_CHECK(cudaMemcpyAsync(&host_norm_, norm_.data(), sizeof(double),
                                        cudaMemcpyDeviceToHost, stream_));
        AGPT_CUDA_CHECK(cudaStreamSynchronize(stream_));
        return host_norm_;
    }
    // A copy from pageable memory has read its source when it returns; host_norm_ outlives it.
    void clip_to_norm(float* g, std::size_t n, double norm, double max_norm) override {
        host_norm_ = norm;
        AGPT_CUDA_CHECK(cudaMemcpyAsync(norm_.data(), &host_norm_, sizeof(double),
                                        cudaMemcpyHostToDevice, stream_));
        cuda::clip_to_norm(g, n, norm_.data(), max_norm, stream_);
    }

  private:
    cudaStream_t stream_;
    std::deque<cuda::DeviceBuffer<float>> blocks_;
    cuda::DeviceBuffer<double> norm_;
    cuda::DeviceBuffer<unsigned char> scratch_;
    double host_norm_ = 0.0;
};

}  // namespace

std::unique_ptr<ZeroShard> make_cuda_zero_shard(Communicator& device_comm, Communicator& host_comm,
                                                LanguageModel& cuda_model,
                                                std::size_t bucket_floats) {
    GpuModel& gpu = cuda_model_of(cuda_model).gpu();
    return std::make_unique<ZeroShard>(device_comm, host_comm, gpu.param_views(), gpu.num_params(),
                                       std::make_unique<DeviceShardMemory>(gpu.stream()),
                                       bucket_floats);
}

void cuda_all_gather_parameters(ZeroShard& zero, LanguageModel& cuda_model) {
    GpuModel& gpu = cuda_model_of(cuda_model).gpu_for_update();
    zero.all_gather_parameters(gpu.params_device());
    gpu.params_changed();
}

std::span<float> cuda_device_grads(LanguageModel& cuda_model) {
    GpuModel& gpu = cuda_model_of(cuda_model).gpu();
    return {gpu.grads_device(), gpu.num_params()};
}

Transformer& set_cuda_expert_parallel(LanguageModel& cuda_model, Communicator* host_ep,
                                      Communicator* device_ep) {
    return cuda_model_of(cuda_model).set_expert_parallel(host_ep, device_ep);
}

Transformer& set_cuda_tensor_parallel(LanguageModel& cuda_model, const TensorParallel& host_tp,
                                      Communicator* device_tp) {
    return cuda_model_of(cuda_model).set_tensor_parallel(host_tp, device_tp);
}

double clip_sharded_model_gradients(Communicator& ep, LanguageModel& model, const ShardedRanges& r,
                                    double max_norm) {
    auto* m = dynamic_cast<CudaModel*>(&model);
    if (m == nullptr) return clip_sharded_grad_norm(ep, model.grads().data(), r, max_norm);
    // As clip_sharded_grad_norm: the replicated ranges' squares, the shards' summed over ep.
    const double total =
        std::sqrt(m->squared_grad_norm(r.replicated) +
                  ep.all_reduce_value(m->squared_grad_norm(r.sharded), ReduceOp::Sum));
    m->clip_grads_to_norm(total, max_norm);
    return total;
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

double cuda_device_memory_gib() {
    const cuda::RuntimeInfo info = cuda::query_runtime();  // device properties: no context
    return info.devices.empty()
               ? 0.0
               : static_cast<double>(info.devices.front().memory_bytes) / (1 << 30);
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
double cuda_device_memory_gib() {
    return 0.0;
}
void set_cuda_gradient_communicator_factory(CudaGradientCommunicatorFactory) {}
std::unique_ptr<Communicator> make_cuda_gradient_communicator(Communicator&, LanguageModel&) {
    fail("training.device = cuda: this build has no CUDA backend");
}
std::span<float> cuda_device_grads(LanguageModel&) {
    fail("training.device = cuda: this build has no CUDA backend");
}
std::unique_ptr<Optimizer> make_cuda_optimizer(const JobConfig&, LanguageModel&,
                                               const std::vector<ParamView>&) {
    fail("training.device = cuda: this build has no CUDA backend");
}
std::unique_ptr<ZeroShard> make_cuda_zero_shard(Communicator&, Communicator&, LanguageModel&,
                                                std::size_t) {
    fail("training.device = cuda: this build has no CUDA backend");
}
void cuda_all_gather_parameters(ZeroShard&, LanguageModel&) {
    fail("training.device = cuda: this build has no CUDA backend");
}
Transformer& set_cuda_expert_parallel(LanguageModel&, Communicator*, Communicator*) {
    fail("training.device = cuda: this build has no CUDA backend");
}
Transformer& set_cuda_tensor_parallel(LanguageModel&, const TensorParallel&, Communicator*) {
    fail("training.device = cuda: this build has no CUDA backend");
}
double clip_sharded_model_gradients(Communicator& ep, LanguageModel& model, const ShardedRanges& r,
                                    double max_norm) {
    return clip_sharded_grad_norm(ep, model.grads().data(), r, max_norm);
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
