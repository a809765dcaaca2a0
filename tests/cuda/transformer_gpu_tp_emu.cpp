// The GPU transformer with Megatron-style tensor parallelism over every rank of the world
// (TransformerGpu::set_tensor_parallel), over the emulated backend: the MPI communicator stands
// in for NCCL (the emulator's device memory is host memory). Run by
// tests/cuda/cuda_data_parallel_emu_test.sh as one process (degree 1) and under mpirun -np 2.
// Each rank uploads its shards (take_shard of the same full weights) and runs the same batch;
// the reference is the unsharded TransformerGpu in the same precision: the full logits (gathered
// over the vocabulary ranges), the loss, and every gradient view gathered into the full tensor
// (gather_shard). fp32 within 1e-5 (1e-4 for the logits' and gradients' long sums); bf16 within
// 1e-2 for the logits and loss and 5e-2 for the gradients, the bound the unsharded bf16 model
// meets against fp32 (transformer_gpu_test.cpp): the two bf16 runs round their partial sums
// differently.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "dist/communicator.h"
#include "model/gpu/transformer_gpu.h"
#include "model/model_args.h"
#include "model/tensor_parallel.h"
#include "model/transformer.h"

namespace agpt::cuda::test {
namespace {

// The tiny flavor (4 heads, 2 KV heads, FFN 192: all even) with an odd vocabulary, so that the
// ranks' vocabulary ranges differ in length.
ModelArgs tiny_args(bool switches) {
    ModelArgs a = find_flavor("tiny")->args;
    a.vocab_size = 509;
    if (switches) {  // every switch that meets a tensor-parallel sum: QK-norm, both caps
        a.qk_norm = true;
        a.attn_softcap = 0.5;
        a.final_softcap = 2.0;
    }
    return a;
}

void check_tensor_parallel_model(const ModelArgs& a, GpuPrecision precision, double tol,
                                 double grad_tol, const std::string& what) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Communicator& world = world_communicator();
    const int rank = world.rank(), ranks = world.size();
    // A sub-group of the same ranks, as NCCL would be: its own messages.
    const std::unique_ptr<Communicator> group = world.split(0, rank);
    TensorParallel tp;
    tp.rank = rank;
    tp.degree = ranks;
    tp.group = group.get();
    const int B = 2, T = 7, N = B * T, V = a.vocab_size;
    const std::string tag = " " + what + " rank " + std::to_string(rank);

    Transformer cpu(a, B, T);
    cpu.init_weights("agpt", 7);
    TransformerGpu full(a, B, T, precision);
    full.upload_params(cpu.params().data());

    TransformerGpu sharded(a, B, T, precision);
    sharded.set_tensor_parallel(tp);
    const TransformerLayout layout = transformer_layout(a, tp);
    ASSERT_EQ(sharded.param_views().size(), layout.views.size()) << tag;
    std::vector<float> local(sharded.num_params());
    for (std::size_t i = 0; i < layout.views.size(); i++) {
        const ParamView& v = layout.views[i];
        ASSERT_EQ(sharded.param_views()[i].name, v.name) << tag;
        ASSERT_EQ(sharded.param_views()[i].offset, v.offset) << tag;
        take_shard(layout.shards[i], cpu.params().data() + cpu.view(v.name).offset,
                   local.data() + v.offset);
    }
    sharded.upload_params(local.data());

    Rng rng(91);
    const auto tokens = random_tokens(N, V, rng);
    auto targets = random_tokens(N, V, rng);
    targets[3] = -1;

    const std::size_t NV = static_cast<std::size_t>(N) * V;
    std::vector<float> ref_logits(NV), got_logits(NV);
    full.forward_logits(tokens.data(), B, T, ref_logits.data());
    sharded.forward_logits(tokens.data(), B, T, got_logits.data());
    expect_close("tp logits" + tag, got_logits, ref_logits, tol);

    const double scale = 1.0 / N;
    full.zero_grad();
    sharded.zero_grad();
    const double ref_loss = full.forward_backward(tokens.data(), targets.data(), B, T, scale);
    const double got_loss = sharded.forward_backward(tokens.data(), targets.data(), B, T, scale);
    std::printf("    loss sum: unsharded %.8f tp %.8f\n", ref_loss, got_loss);
    expect_close("tp loss" + tag, {static_cast<float>(got_loss)}, {static_cast<float>(ref_loss)},
                 precision == GpuPrecision::fp32 ? kTolFp32 : tol);

    std::vector<float> ref_grads(full.num_params()), grads(sharded.num_params());
    full.download_grads(ref_grads.data());
    sharded.download_grads(grads.data());
    for (std::size_t i = 0; i < layout.views.size(); i++) {
        const ParamView& v = layout.views[i];
        const ShardSpec& s = layout.shards[i];
        std::vector<float> gathered(s.full_numel());
        gather_shard(s, grads.data() + v.offset, gathered.data(), tp);
        const std::size_t at = full.view(v.name).offset;
        const std::vector<float> ref(ref_grads.begin() + static_cast<long>(at),
                                     ref_grads.begin() + static_cast<long>(at + s.full_numel()));
        expect_close("tp d " + v.name + tag, gathered, ref, grad_tol);
    }
    world.barrier();
}

TEST(CudaTensorParallel, TinyMatchesTheUnshardedModelFp32) {
    check_tensor_parallel_model(tiny_args(false), GpuPrecision::fp32, kTolFp32Long, kTolFp32Long,
                                "fp32");
}

TEST(CudaTensorParallel, SwitchesMatchTheUnshardedModelFp32) {
    check_tensor_parallel_model(tiny_args(true), GpuPrecision::fp32, kTolFp32Long, kTolFp32Long,
                                "fp32 qk-norm caps");
}

TEST(CudaTensorParallel, TinyMatchesTheUnshardedModelBf16) {
    check_tensor_parallel_model(tiny_args(true), GpuPrecision::bf16, kTolBf16, 5e-2,
                                "bf16 qk-norm caps");
}

// What the CPU Transformer refuses, refused here too, naming the mismatch.
TEST(CudaTensorParallel, RefusesWidthsTheDegreeDoesNotDivide) {
    AGPT_REQUIRE_CUDA_DEVICE();
    ModelArgs a = tiny_args(false);
    TransformerGpu gpu(a, 1, 4, GpuPrecision::fp32);
    TensorParallel tp;
    tp.degree = 3;  // 4 heads, 2 KV heads
    try {
        gpu.set_tensor_parallel(tp);
        ADD_FAILURE() << "a degree of 3 was accepted for 4 heads";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("divisible by the tensor-parallel degree 3"),
                  std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace agpt::cuda::test
