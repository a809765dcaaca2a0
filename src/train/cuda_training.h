#pragma once
// Training on one CUDA device (training.device = "cuda"). The GPU transformer
// (model/gpu/transformer_gpu.h) stands behind the LanguageModel interface and the device
// optimizers (optim/cuda_optimizer.h) behind the Optimizer interface, so the trainer's loop,
// checkpoints, validation and sampling are the CPU path's own:
//   - the model's params() is a host copy, downloaded when asked for; whatever the caller writes
//     there (a checkpoint load, initial weights) is uploaded before the next device call;
//   - the optimizer has its CPU twin's state names and layout, so checkpoints move between cpu
//     and cuda both ways; state_tensors() downloads the state, and the next step() uploads it;
//   - clip_model_gradients clips where the gradients live (on the device for this model).
//   - data parallelism: one GPU per rank; the gradients are summed on the device by a
//     communicator over the data-parallel ranks (NCCL), bucket by bucket while backward runs;
//     with ZeRO-1 reduce-scattered after backward, each GPU stepping the parameters it owns;
//   - expert parallelism: the routed experts sharded over the ranks as on the CPU, the tokens
//     exchanged on the device (set_cuda_expert_parallel);
//   - tensor parallelism: the dense model sharded Megatron-style as on the CPU, its sums on the
//     device (set_cuda_tensor_parallel).
// The agpt family's dense block with every switch and activation checkpointing, GPT-2, the
// built-in optimizers, data parallelism (with ZeRO-1), tensor and expert parallelism run here so
// far;
// check_cuda_training refuses the rest naming the key.
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/expert_parallel.h"
#include "model/language_model.h"
#include "model/tensor_parallel.h"
#include "optim/optimizer.h"
#include "train/config.h"

namespace agpt {

struct ModelArgs;
class Transformer;
class ZeroShard;

// Fails with one message naming the key when this job cannot train on cuda: a model family,
// flavor (MLA, MoE) or optimizer the GPU path lacks, a build without the CUDA backend, or no
// visible device. Creates nothing; the trainer calls it before the run folder.
void check_cuda_training(const JobConfig& cfg);

// The job's model on the device (training.mixed_precision_param picks bf16 or fp32 compute),
// vocabulary from the tokenizer, activations for (max_batch, max_seq) kept as
// activation_checkpoint.mode says; weights not initialised.
std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig& cfg, int vocab_size, int max_batch,
                                               int max_seq);
// The same for a transformer of these args (a run's or a Hugging Face folder's model).
std::unique_ptr<LanguageModel> make_cuda_model(const JobConfig& cfg, const ModelArgs& args,
                                               int max_batch, int max_seq);
// The job's [optimizer] stepping make_cuda_model's model on the device.
std::unique_ptr<Optimizer> make_cuda_optimizer(const JobConfig& cfg, LanguageModel& cuda_model);
// The same over `views` only (ZeRO-1's owned parameters): state on the device for those alone,
// named and laid out as the CPU optimizer over the same views.
std::unique_ptr<Optimizer> make_cuda_optimizer(const JobConfig& cfg, LanguageModel& cuda_model,
                                               const std::vector<ParamView>& views);

// Clips the gradients where they live (the device for make_cuda_model's models, grads()
// otherwise) to max_norm (optim/grad_clip.h); returns the norm before clipping.
double clip_model_gradients(LanguageModel& model, double max_norm);

// Policy-gradient training on either device (rl/grpo.h): Transformer::token_logprobs and
// Transformer::forward_backward_weighted of the agpt transformer, on the device for
// make_cuda_model's models. Fails for another family.
void model_token_logprobs(LanguageModel& model, const int32_t* tokens, const int32_t* targets,
                          int B, int T, double* logprobs);
double model_forward_backward_weighted(LanguageModel& model, const int32_t* tokens,
                                       const int32_t* targets, const float* weights, int B, int T);
// The CPU Transformer that samples `model`'s distribution with its key/value cache (rl/rollout.h):
// the model itself, or for make_cuda_model's models the CPU twin with the device's parameters,
// downloaded when an optimizer step has changed them since the last call (once per step, not per
// token). For reading only: writes to it do not reach the device.
Transformer& sampling_transformer(LanguageModel& model);

// Data parallelism on cuda (docs/distributed.md, "Data parallelism on GPUs"). One GPU per rank: the
// device of this rank's local rank (launcher variables; the world rank without them) modulo the
// device count, set before anything is allocated on it; returns the device.
int select_cuda_device(int world_rank);
// The flat fp32 gradient buffer of make_cuda_model's model, on the device.
std::span<float> cuda_device_grads(LanguageModel& cuda_model);
// The communicator that sums the device gradients over `data_ranks` (host): NCCL over the same
// ranks, ordered after the model's stream. A factory set here makes it instead: the emulated
// backend's tests, whose device memory is host memory, let a host communicator stand in.
using CudaGradientCommunicatorFactory =
    std::function<std::unique_ptr<Communicator>(Communicator& data_ranks)>;
void set_cuda_gradient_communicator_factory(CudaGradientCommunicatorFactory factory);
std::unique_ptr<Communicator> make_cuda_gradient_communicator(Communicator& data_ranks,
                                                              LanguageModel& cuda_model);
// ZeRO-1 (dist/zero.h) over make_cuda_model's model: the shard's buffers on its device, every copy
// and norm queued on its stream. device_comm (make_cuda_gradient_communicator's) moves the
// gradients and parameters; host_comm (the same data-parallel ranks) sums the squared norm. Its
// reduce_scatter_gradients and clip_owned take cuda_device_grads. Its padded buffers hold
// bucket_floats (parallelism.bucket_mb): the ranges go through them in pieces, so the device
// memory ZeRO-1 adds is one bucket, not a copy of the gradients.
std::unique_ptr<ZeroShard> make_cuda_zero_shard(Communicator& device_comm, Communicator& host_comm,
                                                LanguageModel& cuda_model,
                                                std::size_t bucket_floats);
// zero.all_gather_parameters on the device parameters of make_cuda_model's model, then what
// derives from them: the bf16 copy is refreshed, the host copy downloaded again when next read.
void cuda_all_gather_parameters(ZeroShard& zero, LanguageModel& cuda_model);

// Expert parallelism on cuda (docs/distributed.md): make_cuda_model's agpt model takes the CPU
// Transformer's expert-shard layout (E/e routed experts per MoE layer, rank r's block r);
// host_ep (the trainer's EP group) serves the CPU twin, device_ep (NCCL over the same ranks,
// from make_cuda_gradient_communicator) the token exchange on the device. Returns the CPU twin,
// whose is_expert_shard names the shard views. Call before init_weights and the optimizer.
Transformer& set_cuda_expert_parallel(LanguageModel& cuda_model, Communicator* host_ep,
                                      Communicator* device_ep);
// Tensor parallelism on cuda (docs/distributed.md): make_cuda_model's agpt model takes the CPU
// Transformer's shard layout (model/tensor_parallel.h): its CPU twin is rebuilt with host_tp
// (the trainer's TP group: initialisation, checkpoint gathers), the device model sharded with
// device_tp (NCCL over the same ranks, from make_cuda_gradient_communicator) for its sums.
// Returns the twin, whose shards() name the split views. Call before init_weights and the
// optimizer.
Transformer& set_cuda_tensor_parallel(LanguageModel& cuda_model, const TensorParallel& host_tp,
                                      Communicator* device_tp);
// clip_sharded_grad_norm (dist/expert_parallel.h) where the gradients live: for make_cuda_model's
// models each range's norm and the clip run on the device, the shards' squares summed over ep.
double clip_sharded_model_gradients(Communicator& ep, LanguageModel& model, const ShardedRanges& r,
                                    double max_norm);

// The device's dense bf16 peak for MFU: from a table of known devices by name, else measured
// with bf16 GEMMs of growing size (`source` says which).
struct CudaPeak {
    std::string device;
    double tflops = 0.0;
    std::string source;  // "table" | "measured"
};
CudaPeak cuda_peak_tflops();
// Dense bf16 TFLOP/s of a device by its name (H100 SXM 989.4, ...); 0 when not in the table.
double cuda_table_peak_tflops(const std::string& device_name);

// Device memory in use now (all processes' allocations and the contexts: cudaMemGetInfo), GiB.
double cuda_memory_used_gib();
// The first visible device's memory in GiB, 0 when none is (or no CUDA backend is built); asks
// the runtime without creating a context on the device.
double cuda_device_memory_gib();

}  // namespace agpt
