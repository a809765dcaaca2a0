// `agpt plan` for cuda jobs (tools/plan.h, model/gpu/gpu_memory.h) against the buffers the GPU
// models and the device optimizers really allocate: for each flavor, precision and activation
// checkpointing mode the plan's parameter, gradient and bf16-copy bytes equal the model's
// state_bytes(), its activation bytes the model's activation_bytes(), and its optimizer state the
// device optimizer's state_bytes(), exactly; with expert and tensor parallelism too.
#include <cstdlib>
#include <memory>
#include <string>

#include "../shape_only_group.h"
#include "cuda_test_util.h"
#include "dist/communicator.h"
#include "model/gpt2.h"
#include "model/gpu/gpt2_gpu.h"
#include "model/gpu/gpu_memory.h"
#include "model/gpu/transformer_gpu.h"
#include "model/tensor_parallel.h"
#include "optim/cuda_optimizer.h"
#include "tools/plan.h"
#include "train/config.h"

namespace agpt::cuda::test {
namespace {

constexpr int kVocab = 300;

JobConfig cuda_job(const std::string& family, const std::string& flavor, int B, int T,
                   const std::string& precision, const std::string& checkpoint,
                   const std::string& optimizer = "AdamW") {
    return load_job_config("", {{"model.name", family},
                                {"model.flavor", flavor},
                                {"training.device", "cuda"},
                                {"training.mixed_precision_param", precision},
                                {"training.local_batch_size", std::to_string(B)},
                                {"training.seq_len", std::to_string(T)},
                                {"activation_checkpoint.mode", checkpoint},
                                {"optimizer.name", optimizer}});
}

GpuPrecision precision_of(const std::string& p) {
    return p == "float32" ? GpuPrecision::fp32 : GpuPrecision::bf16;
}

void expect_plan_equals(const MemoryPlan& plan, const GpuModel& gpu) {
    EXPECT_EQ(plan.param_bytes + plan.grad_bytes + plan.bf16_param_bytes, gpu.state_bytes());
    EXPECT_EQ(plan.param_bytes, gpu.num_params() * sizeof(float));
    EXPECT_EQ(plan.local_params, static_cast<long>(gpu.num_params()));
    EXPECT_EQ(plan.activation_bytes, gpu.activation_bytes());
    EXPECT_EQ(plan.activation_bytes, plan.saved_activation_bytes + plan.layer_buffer_bytes +
                                         plan.backward_buffer_bytes + plan.head_chunk_bytes +
                                         plan.batch_bytes + plan.tp_stage_bytes);
}

TEST(CudaPlan, AgptModelBytesEqualThePlans) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        std::string flavor;
        int B, T;
    };
    for (const Case& c : {Case{"tiny", 2, 16}, Case{"tiny_kitchen_sink", 1, 12},
                          Case{"moe_tiny", 2, 8}, Case{"moe_debug_dense", 1, 8}})
        for (const std::string precision : {"bfloat16", "float32"})
            for (const std::string mode : {"none", "full"}) {
                SCOPED_TRACE(c.flavor + " " + precision + " " + mode);
                const MemoryPlan plan =
                    plan_memory(cuda_job("agpt", c.flavor, c.B, c.T, precision, mode), 0, kVocab);
                ASSERT_TRUE(plan.cuda);
                const TransformerGpu gpu(plan.args, c.B, c.T, precision_of(precision), nullptr,
                                         plan.activation_checkpoint);
                expect_plan_equals(plan, gpu);
            }
}

// Expert parallelism: the routed experts shrink to E/ep per rank (parameters, gradients, the bf16
// copy and the optimizer state), the grad-norm scratch keeps the whole model's size.
TEST(CudaPlan, ExpertParallelModelBytesEqualThePlans) {
    AGPT_REQUIRE_CUDA_DEVICE();
    for (const std::string mode : {"none", "full"}) {
        SCOPED_TRACE(mode);
        JobConfig cfg = cuda_job("agpt", "moe_tiny", 2, 8, "bfloat16", mode);
        cfg.parallelism.expert_parallel_degree = 2;
        const MemoryPlan plan = plan_memory(cfg, 0, kVocab);
        EXPECT_EQ(plan.expert_parallel_degree, 2);
        TransformerGpu gpu(plan.args, 2, 8, GpuPrecision::bf16, nullptr,
                           plan.activation_checkpoint);
        ShapeOnlyGroup ep(0, 2);
        gpu.set_expert_parallel(&ep);
        expect_plan_equals(plan, gpu);
        EXPECT_EQ(plan.optimizer_bytes,
                  make_device_optimizer(cfg.optimizer.spec(), gpu)->state_bytes());
    }
}

// Tensor parallelism: the plan is rank 0's (the longest vocabulary range of an uneven split);
// transformer_gpu_bytes for any rank equals that rank's model. The optimizer state covers the
// rank's shard.
TEST(CudaPlan, TensorParallelModelBytesEqualThePlans) {
    AGPT_REQUIRE_CUDA_DEVICE();
    constexpr int kOddVocab = 301, B = 2, T = 8, tp_degree = 2;
    for (const std::string flavor : {"tiny", "tiny_qknorm_softcap"})
        for (const std::string precision : {"bfloat16", "float32"})
            for (const std::string mode : {"none", "full"}) {
                SCOPED_TRACE(flavor + " " + precision + " " + mode);
                JobConfig cfg = cuda_job("agpt", flavor, B, T, precision, mode, "Muon");
                cfg.parallelism.tensor_parallel_degree = tp_degree;
                const MemoryPlan plan = plan_memory(cfg, 0, kOddVocab);
                ASSERT_TRUE(plan.cuda);
                EXPECT_EQ(plan.tensor_parallel_degree, tp_degree);
                EXPECT_EQ(plan.tp_stage_bytes > 0, precision == "bfloat16");
                for (int rank = 0; rank < tp_degree; ++rank) {
                    SCOPED_TRACE("rank " + std::to_string(rank));
                    TransformerGpu gpu(plan.args, B, T, precision_of(precision), nullptr,
                                       plan.activation_checkpoint);
                    ShapeOnlyGroup group(rank, tp_degree);
                    TensorParallel tp;
                    tp.rank = rank;
                    tp.degree = tp_degree;
                    tp.group = &group;
                    gpu.set_tensor_parallel(tp);
                    const GpuModelBytes bytes =
                        transformer_gpu_bytes(plan.args, B, T, precision_of(precision),
                                              plan.activation_checkpoint, 1, tp);
                    EXPECT_EQ(bytes.state(), gpu.state_bytes());
                    EXPECT_EQ(bytes.activations(), gpu.activation_bytes());
                    if (rank == 0) {
                        expect_plan_equals(plan, gpu);
                        EXPECT_EQ(plan.optimizer_bytes,
                                  make_device_optimizer(cfg.optimizer.spec(), gpu)->state_bytes());
                    } else {
                        EXPECT_LT(gpu.num_params(), static_cast<std::size_t>(plan.local_params));
                    }
                }
            }
}

TEST(CudaPlan, Gpt2ModelBytesEqualThePlans) {
    AGPT_REQUIRE_CUDA_DEVICE();
    for (const std::string precision : {"bfloat16", "float32"}) {
        SCOPED_TRACE(precision);
        const MemoryPlan plan =
            plan_memory(cuda_job("gpt2", "gpt2_tiny", 2, 24, precision, "none"), 0, kVocab);
        Gpt2Args args = find_gpt2_flavor("gpt2_tiny")->args;
        args.vocab_size = kVocab;
        args.padded_vocab_size = 0;
        const Gpt2Gpu gpu(args, 2, 24, precision_of(precision));
        expect_plan_equals(plan, gpu);
    }
}

TEST(CudaPlan, DeviceOptimizerStateEqualsThePlans) {
    AGPT_REQUIRE_CUDA_DEVICE();
    for (const std::string flavor : {"tiny", "moe_tiny"})
        for (const std::string optimizer : {"AdamW", "Muon", "Mano", "Lion", "SophiaG", "SPAM",
                                            "ScheduleFreeAdamW", "AdEMAMix"}) {
            SCOPED_TRACE(flavor + " " + optimizer);
            const JobConfig cfg = cuda_job("agpt", flavor, 1, 8, "bfloat16", "none", optimizer);
            const MemoryPlan plan = plan_memory(cfg, 0, kVocab);
            TransformerGpu gpu(plan.args, 1, 8, GpuPrecision::bf16);
            EXPECT_EQ(plan.optimizer_bytes,
                      make_device_optimizer(cfg.optimizer.spec(), gpu)->state_bytes());
        }
    const JobConfig cfg = cuda_job("gpt2", "gpt2_tiny", 1, 8, "float32", "none", "Muon");
    const MemoryPlan plan = plan_memory(cfg, 0, kVocab);
    Gpt2Args args = find_gpt2_flavor("gpt2_tiny")->args;
    args.vocab_size = kVocab;
    args.padded_vocab_size = 0;
    Gpt2Gpu gpu(args, 1, 8, GpuPrecision::fp32);
    EXPECT_EQ(plan.optimizer_bytes,
              make_device_optimizer(cfg.optimizer.spec(), gpu)->state_bytes());
}

}  // namespace
}  // namespace agpt::cuda::test
