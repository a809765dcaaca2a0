// Tensor parallelism against one rank. WorldTensorParallel.* run as one rank in the plain suite
// (TP = 1: the vocabulary-parallel head and the sharded model reduce to the ordinary ones) and
// over 2 and 3 ranks in the `tensor_parallel_mpi` tests (tests/distributed.cmake): the group is
// the whole world, and every rank compares its shards with a full one-rank model it builds
// itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "core/rng.h"
#include "dist/communicator.h"
#include "kernels/cpu/cross_entropy.h"
#include "model/tensor_parallel.h"
#include "model/transformer.h"
#include "optim/optimizer.h"
#include "shape_only_group.h"
#include "tools/plan.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace agpt {
namespace {

TensorParallel world_group() {
    Communicator& c = world_communicator();
    TensorParallel tp;
    tp.rank = c.rank();
    tp.degree = c.size();
    tp.group = &c;
    return tp;
}

std::vector<float> random_floats(std::size_t n, uint64_t seed, double std) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(rng.normal() * std);
    return v;
}

// max |a − b| / max(max |b|, tiny)
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
    double diff = 0, scale = 1e-30;
    for (std::size_t i = 0; i < a.size(); i++) {
        diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
        scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
    }
    return diff / scale;
}

TEST(TensorParallel, VocabRangesAreContiguousAndTheFirstOnesLonger) {
    EXPECT_EQ(vocab_range(258, 0, 4), std::make_pair(0, 65));
    EXPECT_EQ(vocab_range(258, 1, 4), std::make_pair(65, 65));
    EXPECT_EQ(vocab_range(258, 2, 4), std::make_pair(130, 64));
    EXPECT_EQ(vocab_range(258, 3, 4), std::make_pair(194, 64));
    EXPECT_EQ(vocab_range(11, 0, 1), std::make_pair(0, 11));
}

TEST(WorldTensorParallel, VocabParallelCrossEntropyMatchesOneRank) {
    const TensorParallel tp = world_group();
    const int N = 9, C = 6, V = 11, chunk = 4;  // 11 rows over 2 or 3 ranks: uneven ranges
    const auto [first, rows] = vocab_range(V, tp.rank, tp.degree);
    const std::vector<float> x = random_floats(static_cast<std::size_t>(N) * C, 1, 1.0),
                             w = random_floats(static_cast<std::size_t>(V) * C, 2, 1.5),
                             row_scale = random_floats(N, 3, 1.0);
    std::vector<int32_t> targets(N);
    for (int i = 0; i < N; i++) targets[i] = i % 4 == 2 ? -1 : (3 * i + 1) % V;
    for (const float cap : {0.0f, 2.5f}) {
        for (const bool scaled : {false, true}) {
            const float* rs = scaled ? row_scale.data() : nullptr;
            std::vector<float> dx_ref(static_cast<std::size_t>(N) * C, 0.0f),
                dw_ref(static_cast<std::size_t>(V) * C, 0.0f),
                scratch_ref(cpu::lm_head_scratch_size(chunk, V));
            std::vector<double> loss_ref(N), loss(N);
            const double sum_ref = cpu::lm_head_cross_entropy<float>(
                dx_ref.data(), dw_ref.data(), x.data(), w.data(), targets.data(), N, C, V, 0.1f,
                scratch_ref.data(), chunk, cap, rs, loss_ref.data());
            // dx starts non-zero: it is overwritten, not accumulated.
            std::vector<float> dx(dx_ref.size(), 7.0f),
                dw(static_cast<std::size_t>(rows) * C, 0.0f),
                scratch(static_cast<std::size_t>(chunk) * rows);
            const double sum = vocab_parallel_cross_entropy(
                dx.data(), dw.data(), x.data(), w.data() + static_cast<std::size_t>(first) * C,
                targets.data(), N, C, first, rows, 0.1f, scratch.data(), chunk, cap, rs,
                loss.data(), tp);
            EXPECT_NEAR(sum, sum_ref, 1e-5 * std::fabs(sum_ref)) << "cap " << cap;
            for (int i = 0; i < N; i++) {
                EXPECT_NEAR(loss[i], loss_ref[i], 1e-5 * (1 + loss_ref[i])) << i;
                if (targets[i] < 0) {
                    EXPECT_EQ(loss[i], 0.0);
                }
            }
            EXPECT_LT(relative_error(dx, dx_ref), 1e-5) << "cap " << cap;
            const std::vector<float> dw_mine(dw_ref.begin() + static_cast<long>(first) * C,
                                             dw_ref.begin() + static_cast<long>(first + rows) * C);
            EXPECT_LT(relative_error(dw, dw_mine), 1e-5) << "cap " << cap;
            // The forward alone gives the same loss.
            const double forward_only = vocab_parallel_cross_entropy(
                nullptr, nullptr, x.data(), w.data() + static_cast<std::size_t>(first) * C,
                targets.data(), N, C, first, rows, 0.1f, scratch.data(), chunk, cap, nullptr,
                nullptr, tp);
            EXPECT_EQ(forward_only, sum);
        }
    }
}

// Heads, KV heads and FFN width divisible by 1, 2 and 3; a vocabulary that is not.
ModelArgs small_args(FfnType ffn) {
    ModelArgs a;
    a.dim = 48;
    a.n_layers = 2;
    a.n_heads = 6;
    a.n_kv_heads = 6;
    a.vocab_size = 37;
    a.ffn_hidden_override = 36;
    a.multiple_of = 6;
    a.qk_norm = true;
    a.attn_softcap = 5.0;
    a.final_softcap = 3.0;
    a.ffn = ffn;
    return a;
}

TEST(WorldTensorParallel, ShardedModelMatchesOneRank) {
    const TensorParallel tp = world_group();
    const int B = 2, T = 5, N = B * T;
    // Activation checkpointing recomputes each layer's forward, collectives included.
    for (const auto& [ffn, checkpoint] : {std::pair{FfnType::swiglu, ActivationCheckpoint::none},
                                          std::pair{FfnType::relu2, ActivationCheckpoint::none},
                                          std::pair{FfnType::swiglu, ActivationCheckpoint::full}}) {
        ModelArgs a = small_args(ffn);
        if (ffn == FfnType::swiglu) a.n_heads = 12;  // grouped-query: 2 heads per KV head
        Transformer full(a, B, T), mine(a, B, T, checkpoint, tp);
        full.init_weights("agpt", 5);
        mine.init_weights("agpt", 5);
        ASSERT_EQ(mine.param_views().size(), full.param_views().size());
        // The local parameters are exactly the one-rank model's slices.
        std::size_t local_total = 0;
        for (std::size_t i = 0; i < full.param_views().size(); i++) {
            const ParamView& fv = full.param_views()[i];
            const ParamView& mv = mine.param_views()[i];
            const ShardSpec& s = mine.shards()[i];
            ASSERT_EQ(mv.name, fv.name);
            ASSERT_EQ(s.full_shape(mv.shape), fv.shape) << fv.name;
            std::vector<float> expected(mv.numel());
            take_shard(s, full.params().data() + fv.offset, expected.data());
            ASSERT_TRUE(
                std::equal(expected.begin(), expected.end(), mine.params().data() + mv.offset))
                << fv.name;
            local_total += mv.numel();
        }
        EXPECT_EQ(mine.params().size(), local_total);

        std::vector<int32_t> tokens(N), targets(N);
        for (int i = 0; i < N; i++) {
            tokens[i] = (7 * i + 3) % a.vocab_size;
            targets[i] = i % 6 == 4 ? -1 : (5 * i + 2) % a.vocab_size;
        }
        full.zero_grad();
        mine.zero_grad();
        // Two accumulated backward passes: gradients that need a sum over the group must not
        // sum what earlier passes accumulated.
        double loss_full = 0, loss_mine = 0;
        for (int pass = 0; pass < 2; pass++) {
            loss_full += full.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / N);
            loss_mine += mine.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / N);
        }
        EXPECT_NEAR(loss_mine, loss_full, 1e-5 * loss_full);
        for (std::size_t i = 0; i < full.param_views().size(); i++) {
            const ParamView& fv = full.param_views()[i];
            std::vector<float> gathered(fv.numel()),
                reference(full.grads().begin() + static_cast<long>(fv.offset),
                          full.grads().begin() + static_cast<long>(fv.offset + fv.numel()));
            gather_shard(mine.shards()[i], mine.grads().data() + mine.param_views()[i].offset,
                         gathered.data(), tp);
            EXPECT_LT(relative_error(gathered, reference), 2e-5) << fv.name;
        }
        std::vector<float> logits_full(static_cast<std::size_t>(N) * a.vocab_size),
            logits_mine(logits_full.size());
        full.forward_logits(tokens.data(), B, T, logits_full.data());
        mine.forward_logits(tokens.data(), B, T, logits_mine.data());
        EXPECT_LT(relative_error(logits_mine, logits_full), 1e-5);
        std::vector<float> last_full(a.vocab_size), last_mine(a.vocab_size);
        full.last_logits(tokens.data(), T, last_full.data());
        mine.last_logits(tokens.data(), T, last_mine.data());
        EXPECT_LT(relative_error(last_mine, last_full), 1e-5);
        EXPECT_NEAR(mine.forward_loss(tokens.data(), targets.data(), B, T),
                    full.forward_loss(tokens.data(), targets.data(), B, T), 1e-5 * loss_full);
    }
}

// agpt plan's tensor-parallel estimate (tools/plan.h) against the sharded model on every rank:
// parameters, and rank 0's parameter and activation bytes with and without activation
// checkpointing.
TEST(TensorParallel, PlanEqualsTheShardedModelOnEveryRank) {
    for (const auto& [flavor, degree] : {std::pair{"tiny_qknorm_softcap", 2},
                                         std::pair{"small_relu2", 2}, std::pair{"small", 2}}) {
        for (const std::string mode : {"none", "full"}) {
            SCOPED_TRACE(std::string(flavor) + " TP " + std::to_string(degree) + " " + mode);
            const JobConfig cfg =
                load_job_config("", {{"model.flavor", flavor},
                                     {"training.local_batch_size", "2"},
                                     {"training.seq_len", "32"},
                                     {"parallelism.tensor_parallel_degree", std::to_string(degree)},
                                     {"activation_checkpoint.mode", mode}});
            const MemoryPlan plan = plan_memory(cfg);
            long total = 0;
            for (int rank = 0; rank < degree; rank++) {
                ShapeOnlyGroup group(rank, degree);
                TensorParallel tp;
                tp.rank = rank;
                tp.degree = degree;
                tp.group = &group;
                Transformer model(plan.args, 2, 32, plan.activation_checkpoint, tp);
                EXPECT_EQ(tensor_parallel_shard(plan.args, degree, rank).params(),
                          static_cast<long>(model.params().size()))
                    << "rank " << rank;
                total += static_cast<long>(model.params().size());
                if (rank != 0) continue;
                EXPECT_EQ(plan.local_params, static_cast<long>(model.params().size()));
                EXPECT_EQ(plan.param_bytes, model.params().size() * sizeof(float));
                EXPECT_EQ(plan.activation_bytes, model.activation_bytes());
            }
            // Every rank holds the replicated norms.
            const long norms_per_rank =
                plan.args.n_layers *
                    (2L * plan.args.dim + (plan.args.qk_norm ? 2L * plan.args.head_dim() : 0)) +
                plan.args.dim;
            EXPECT_EQ(total, plan.params + (degree - 1) * norms_per_rank);
        }
    }
}

std::unique_ptr<Optimizer> adamw_of(Transformer& model) {
    return make_optimizer(
        OptimizerSpec{},
        optim_params_from(model.param_views(), model.params().data(), model.grads().data()));
}

// One AdamW step on a fixed batch, so that parameters and moments are all non-trivial.
void train_one_step(Transformer& model, Optimizer& opt) {
    const int B = 2, T = 5, V = model.vocab_size();
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (11 * i + 1) % V;
        targets[i] = (3 * i + 5) % V;
    }
    model.zero_grad();
    model.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / (B * T));
    opt.step(1.0);
}

// The full tensor of view i of a (possibly sharded) model, values or one optimizer state.
std::vector<float> full_tensor(const Transformer& m, std::size_t i, const float* local,
                               const TensorParallel& tp) {
    std::vector<float> full(m.shards()[i].full_numel());
    gather_shard(m.shards()[i], local, full.data(), tp);
    return full;
}

const float* state_of(Optimizer& opt, const std::string& view, const std::string& suffix) {
    for (const auto& t : opt.state_tensors())
        if (t.name.ends_with("." + view + "." + suffix)) return static_cast<const float*>(t.data);
    ADD_FAILURE() << "no state " << suffix << " of " << view;
    return nullptr;
}

// A checkpoint saved by a sharded model holds the full tensors: one rank loads it bit for bit
// (TP = N → 1), and a sharded model loads its own shards back bit for bit (1 → N is the same
// file format).
TEST(WorldTensorParallel, CheckpointsHoldFullTensorsAndLoadIntoAnyDegree) {
    namespace fs = std::filesystem;
    const TensorParallel tp = world_group();
    Communicator& world = world_communicator();
    const ModelArgs a = small_args(FfnType::swiglu);
    Transformer mine(a, 2, 5, ActivationCheckpoint::none, tp);
    mine.init_weights("agpt", 3);
    const auto opt = adamw_of(mine);
    train_one_step(mine, *opt);
    const fs::path root =
        fs::temp_directory_path() / ("agpt_tp_checkpoint_" + std::to_string(world.size()));
    if (world.rank() == 0) fs::remove_all(root);
    world.barrier();
    const CheckpointStore store(root.string());
    TrainState state;
    state.step = 1;
    const std::string where = store.save(state, mine, opt.get(), "");
    EXPECT_EQ(where.empty(), world.rank() != 0);
    world.barrier();

    Transformer one(a, 2, 5), again(a, 2, 5, ActivationCheckpoint::none, tp);
    const auto opt_one = adamw_of(one), opt_again = adamw_of(again);
    store.load(1, one, opt_one.get());
    store.load(1, again, opt_again.get());
    EXPECT_EQ(again.params(), mine.params());
    for (std::size_t i = 0; i < mine.param_views().size(); i++) {
        const ParamView& v = mine.param_views()[i];
        const ParamView& f = one.param_views()[i];
        const std::vector<float> full = full_tensor(mine, i, mine.params().data() + v.offset, tp);
        EXPECT_TRUE(std::equal(full.begin(), full.end(), one.params().data() + f.offset)) << v.name;
        for (const char* moment : {"exp_avg", "exp_avg_sq"}) {
            const std::vector<float> m = full_tensor(mine, i, state_of(*opt, v.name, moment), tp);
            EXPECT_TRUE(std::equal(m.begin(), m.end(), state_of(*opt_one, f.name, moment)))
                << v.name << " " << moment;
            EXPECT_TRUE(std::equal(state_of(*opt, v.name, moment),
                                   state_of(*opt, v.name, moment) + v.numel(),
                                   state_of(*opt_again, v.name, moment)))
                << v.name << " " << moment;
        }
    }
    world.barrier();
    if (world.rank() == 0) fs::remove_all(root);
}

}  // namespace
}  // namespace agpt
