// The communicator's collectives, the bucketed gradient all-reduce and the rank mesh.
// WorldCommunicator.* run as one rank under ctest's plain run and as three ranks in the
// `communicator_mpi` test (mpirun -np 3 agpt_tests --gtest_filter=WorldCommunicator.*): the
// expected values are written for any world size.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "dist/expert_parallel.h"
#include "dist/parallel_mesh.h"
#include "dist/zero.h"
#include "model/model_args.h"
#include "optim/optimizer.h"

namespace agpt {
namespace {

TEST(WorldCommunicator, AllReduceSumAvgMinMax) {
    Communicator& c = world_communicator();
    EXPECT_EQ(c.backend(), launched_by_mpi() ? "mpi" : "single");
    const int r = c.rank(), n = c.size();
    // Odd sizes cross MPI's small/large-message algorithm choices.
    for (const std::size_t len : {std::size_t{1}, std::size_t{1000}, std::size_t{300001}}) {
        std::vector<float> v(len);
        for (std::size_t i = 0; i < len; i++) v[i] = static_cast<float>((r + 1) * (i % 7));
        c.all_reduce(v.data(), len, ReduceOp::Sum);
        for (std::size_t i = 0; i < len; i += 997)
            ASSERT_FLOAT_EQ(v[i], static_cast<float>(n * (n + 1) / 2 * (i % 7))) << i;
    }
    double d[3] = {double(r), double(r), double(r) + 1};
    c.all_reduce(d, 1, ReduceOp::Min);
    c.all_reduce(d + 1, 1, ReduceOp::Max);
    c.all_reduce(d + 2, 1, ReduceOp::Avg);
    EXPECT_EQ(d[0], 0.0);
    EXPECT_EQ(d[1], n - 1.0);
    EXPECT_DOUBLE_EQ(d[2], (n + 1) / 2.0);
}

TEST(WorldCommunicator, ReduceScatterAllGatherAllToAllBroadcast) {
    Communicator& c = world_communicator();
    const int r = c.rank(), n = c.size();
    const std::size_t count = 5;
    // reduce_scatter: block b of the sum is Σ_r (100 b + r + k).
    std::vector<float> in(count * n), out(count);
    for (int b = 0; b < n; b++)
        for (std::size_t k = 0; k < count; k++) in[b * count + k] = 100.0f * b + r + k;
    c.reduce_scatter(in.data(), out.data(), count, ReduceOp::Sum);
    for (std::size_t k = 0; k < count; k++)
        EXPECT_EQ(out[k], n * (100.0f * r + k) + n * (n - 1) / 2.0f) << k;
    // all_gather: block b comes from rank b.
    std::vector<float> mine(count, static_cast<float>(r)), all(count * n);
    c.all_gather(mine.data(), all.data(), count);
    for (int b = 0; b < n; b++)
        for (std::size_t k = 0; k < count; k++) EXPECT_EQ(all[b * count + k], b);
    // all_to_all: rank r sends 10 r + b to rank b, so rank r receives 10 b + r from rank b.
    std::vector<float> send(count * n), recv(count * n);
    for (int b = 0; b < n; b++) std::fill_n(send.begin() + b * count, count, 10.0f * r + b);
    c.all_to_all(send.data(), recv.data(), count);
    for (int b = 0; b < n; b++) EXPECT_EQ(recv[b * count], 10.0f * b + r);
    long word[2] = {r == 0 ? 1234567890123L : -1, r == 0 ? -7L : -1};
    c.broadcast(word, sizeof word, 0);
    EXPECT_EQ(word[0], 1234567890123L);
    EXPECT_EQ(word[1], -7);
    c.barrier();
}

// Rank r sends (r + b + 1) % 3 values 1000 r + 10 b + k to rank b: some blocks are empty, and each
// rank learns what it receives from an all_to_all of the counts.
TEST(WorldCommunicator, AllToAllVariableSizesWithEmptyBlocks) {
    Communicator& c = world_communicator();
    const int r = c.rank(), n = c.size();
    std::vector<int> send_counts(n), recv_counts(n, -1);
    std::vector<float> send;
    for (int b = 0; b < n; b++) {
        send_counts[b] = (r + b + 1) % 3;
        for (int k = 0; k < send_counts[b]; k++) send.push_back(1000.0f * r + 10.0f * b + k);
    }
    c.all_to_all(send_counts.data(), recv_counts.data(), 1);
    std::vector<float> expected;
    for (int b = 0; b < n; b++) {
        ASSERT_EQ(recv_counts[b], (b + r + 1) % 3) << "from rank " << b;
        for (int k = 0; k < recv_counts[b]; k++) expected.push_back(1000.0f * b + 10.0f * r + k);
    }
    std::vector<float> recv(expected.size() + 1, -1.0f);  // one guard value past the end
    c.all_to_all_v(send.data(), send_counts.data(), recv.data(), recv_counts.data());
    EXPECT_EQ(std::vector<float>(recv.begin(), recv.end() - 1), expected);
    EXPECT_EQ(recv.back(), -1.0f);
}

TEST(WorldCommunicator, BucketedGradientAllReduceEqualsOneAllReduce) {
    Communicator& c = world_communicator();
    std::vector<float> g(1003), whole(g.size());
    for (std::size_t i = 0; i < g.size(); i++) g[i] = 0.001f * i * (c.rank() + 1) - 0.3f;
    whole = g;
    const int buckets = all_reduce_gradients(c, g.data(), g.size(), 100);
    EXPECT_EQ(buckets, c.size() == 1 ? 0 : 11);
    c.all_reduce(whole.data(), whole.size(), ReduceOp::Sum);
    EXPECT_EQ(g, whole);
}

TEST(WorldCommunicator, SplitFormsGroupsByColorOrderedByKey) {
    Communicator& c = world_communicator();
    const int r = c.rank(), n = c.size();
    // Two colors (even and odd ranks), ordered within a group by descending world rank.
    const auto group = c.split(r % 2, -r);
    const int members = (n - r % 2 + 1) / 2;
    ASSERT_EQ(group->size(), members);
    EXPECT_EQ(group->rank(), members - 1 - r / 2);
    // A sum over the group adds the world ranks of one parity only.
    double sum = r;
    group->all_reduce(&sum, 1, ReduceOp::Sum);
    double want = 0;
    for (int q = r % 2; q < n; q += 2) want += q;
    EXPECT_EQ(sum, want);
    // The world still reduces over everyone after the split.
    EXPECT_EQ(c.all_reduce_value(1.0, ReduceOp::Sum), n);
}

// The all-to-alls of a sub-group (the MoE token exchange of one expert-parallel group) stay within
// it: each member sends member q values naming itself and q, and receives its own from each.
TEST(WorldCommunicator, SplitGroupsExchangeAllToAllWithinTheGroup) {
    Communicator& c = world_communicator();
    const int r = c.rank();
    const auto group = c.split(r % 2, r);
    const int n = group->size(), me = group->rank();
    auto world_rank = [&](int member) { return 2 * member + r % 2; };
    std::vector<int> ints(n), got_ints(n, -1);
    for (int q = 0; q < n; q++) ints[q] = 100 * r + q;
    group->all_to_all(ints.data(), got_ints.data(), 1);
    for (int p = 0; p < n; p++) EXPECT_EQ(got_ints[p], 100 * world_rank(p) + me) << p;
    // Member q gets q + 1 values from everyone.
    std::vector<int> send_counts(n), recv_counts(n, me + 1);
    std::vector<float> values;
    for (int q = 0; q < n; q++) {
        send_counts[q] = q + 1;
        values.insert(values.end(), q + 1, static_cast<float>(100 * r + q));
    }
    std::vector<float> got(static_cast<std::size_t>(n) * (me + 1), -1.0f);
    group->all_to_all_v(values.data(), send_counts.data(), got.data(), recv_counts.data());
    for (int p = 0; p < n; p++)
        for (int i = 0; i <= me; i++)
            EXPECT_EQ(got[static_cast<std::size_t>(p) * (me + 1) + i],
                      static_cast<float>(100 * world_rank(p) + me))
                << p;
}

// Records the ranges it is asked to reduce, as a rank of a world of 2 that adds 1 to each.
class RecordingCommunicator final : public Communicator {
  public:
    std::vector<std::pair<std::size_t, std::size_t>> calls;  // (offset from base, count)
    const float* base = nullptr;
    int rank() const override { return 0; }
    int size() const override { return 2; }
    std::string backend() const override { return "recording"; }
    void all_reduce(float* data, std::size_t n, ReduceOp) override {
        calls.emplace_back(static_cast<std::size_t>(data - base), n);
        for (std::size_t i = 0; i < n; i++) data[i] += 1.0f;
    }
    void all_reduce(double*, std::size_t, ReduceOp) override {}
    void reduce_scatter(const float*, float*, std::size_t, ReduceOp) override {}
    void all_gather(const float*, float*, std::size_t) override {}
    void all_to_all(const float*, float*, std::size_t) override {}
    void all_to_all(const int*, int*, std::size_t) override {}
    void all_to_all_v(const float*, const int*, float*, const int*) override {}
    void broadcast(void*, std::size_t, int) override {}
    void barrier() override {}
    std::unique_ptr<Communicator> split(int, int) override { return nullptr; }
    [[noreturn]] void abort(int) override { std::abort(); }
};

TEST(GradientAllReduce, BucketsCoverTheBufferOnceFromTheEnd) {
    RecordingCommunicator c;
    std::vector<float> g(250, 0.0f);
    c.base = g.data();
    EXPECT_EQ(all_reduce_gradients(c, g.data(), g.size(), 100), 3);
    const std::vector<std::pair<std::size_t, std::size_t>> expected{{150, 100}, {50, 100}, {0, 50}};
    EXPECT_EQ(c.calls, expected);
    for (float v : g) ASSERT_EQ(v, 1.0f);
    EXPECT_THROW(all_reduce_gradients(c, g.data(), g.size(), 0), Error);
}

TEST(WorldCommunicator, ZeroShardRangesPartitionWholeParametersAndRoundTrip) {
    Communicator& c = world_communicator();
    // Five parameters of uneven sizes in buffer order (listed out of order on purpose).
    const std::vector<ParamView> views{{"c", 30, {40}, "ffn"},
                                       {"a", 0, {10}, "norm"},
                                       {"b", 10, {20}, "attention"},
                                       {"d", 70, {25}, "ffn"},
                                       {"e", 95, {5}, "head"}};
    const std::size_t total = 100;
    // The whole ranges in one collective each, and in pieces of 7 floats per rank (uneven:
    // the last piece of a range is partial, a short range has none in the last rounds).
    ZeroShard whole(c, views, total);
    ZeroShard pieces(c, c, views, total, make_host_shard_memory(), 7 * c.size());
    for (ZeroShard* shard : {&whole, &pieces}) {
        ZeroShard& z = *shard;
        const std::string tag = shard == &whole ? "whole ranges" : "pieces of 7";
        std::size_t covered = 0, owned = 0;
        for (int r = 0; r < c.size(); r++) {
            EXPECT_EQ(z.begin(r), covered) << r;
            covered = z.end(r);
        }
        EXPECT_EQ(covered, total);
        for (const auto& v : z.owned_views()) {
            EXPECT_GE(v.offset, z.begin(c.rank()));
            EXPECT_LE(v.offset + v.numel(), z.end(c.rank()));
            owned += v.numel();
        }
        EXPECT_EQ(owned, z.end(c.rank()) - z.begin(c.rank()));
        // Gradients: rank r holds (r + 1)·i; the owned range gets Σ_r (r + 1)·i.
        const int n = c.size();
        std::vector<float> g(total);
        for (std::size_t i = 0; i < total; i++) g[i] = static_cast<float>((c.rank() + 1) * i);
        z.reduce_scatter_gradients(g.data());
        for (std::size_t i = z.begin(c.rank()); i < z.end(c.rank()); i++)
            ASSERT_EQ(g[i], static_cast<float>(n * (n + 1) / 2 * i)) << tag << " " << i;
        // The norm is the whole reduced gradient's.
        double sq = 0;
        for (std::size_t i = 0; i < total; i++) sq += std::pow(double(n * (n + 1) / 2 * i), 2);
        EXPECT_NEAR(z.clip_owned(g.data(), 0.0), std::sqrt(sq), 1e-9 * std::sqrt(sq)) << tag;
        // Parameters: each owner writes 1000 + i into its range; every rank gets all of them.
        std::vector<float> p(total, -1.0f);
        for (std::size_t i = z.begin(c.rank()); i < z.end(c.rank()); i++) p[i] = 1000.0f + i;
        z.all_gather_parameters(p.data());
        for (std::size_t i = 0; i < total; i++) ASSERT_EQ(p[i], 1000.0f + i) << tag << " " << i;
    }
}

TEST(WorldCommunicator, NonBlockingAllReduceAndGatherBytes) {
    Communicator& c = world_communicator();
    const int r = c.rank(), n = c.size();
    // Three reductions in flight at once, progressed by test() and finished by wait().
    std::vector<std::vector<float>> bufs;
    for (const std::size_t len : {std::size_t{3}, std::size_t{1000}, std::size_t{300001}}) {
        bufs.emplace_back(len);
        for (std::size_t i = 0; i < len; i++)
            bufs.back()[i] = static_cast<float>((r + 1) * (i % 5));
    }
    std::vector<PendingReduce> pending;
    for (auto& b : bufs) pending.push_back(c.start_all_reduce(b.data(), b.size()));
    for (auto& p : pending) c.test(p);
    for (auto& p : pending) {
        c.wait(p);
        EXPECT_TRUE(p.done());
        EXPECT_TRUE(c.test(p));
    }
    for (const auto& b : bufs)
        for (std::size_t i = 0; i < b.size(); i += 101)
            ASSERT_EQ(b[i], static_cast<float>(n * (n + 1) / 2 * (i % 5))) << i;
    // Rank q sends q + 1 bytes 'a' + q (rank 1 sends none): only the root receives them.
    for (const int root : {0, n - 1}) {
        const std::string mine = r == 1 ? "" : std::string(r + 1, static_cast<char>('a' + r));
        const std::vector<std::string> got = c.gather_bytes(mine, root);
        if (r != root) {
            EXPECT_TRUE(got.empty());
            continue;
        }
        ASSERT_EQ(got.size(), static_cast<std::size_t>(n));
        for (int q = 0; q < n; q++)
            EXPECT_EQ(got[q], q == 1 ? "" : std::string(q + 1, static_cast<char>('a' + q))) << q;
    }
}

TEST(WorldCommunicator, OverlappedGradientReduceEqualsBucketedAllReduce) {
    Communicator& c = world_communicator();
    // Whole numbers: exact sums, whatever order a reduction adds them in.
    std::vector<float> g(1003), expected(g.size());
    for (std::size_t i = 0; i < g.size(); i++)
        g[i] = static_cast<float>(static_cast<int>(i % 13) * (c.rank() + 1) - 6);
    expected = g;
    all_reduce_gradients(c, expected.data(), expected.size(), 100);
    OverlappedGradReduce reduce(c, g.data(), g.size(), 100);
    // Uneven stretches, as layers of different sizes finish.
    for (std::size_t end = g.size(); end > 0;) {
        const std::size_t begin = end > 37 ? end - 37 : 0;
        reduce.ready(begin, end);
        end = begin;
    }
    EXPECT_EQ(reduce.finish(), c.size() == 1 ? 0 : 11);
    EXPECT_EQ(g, expected);
}

// Shapes of a small model: hidden matrices (Muon's) and norms / embedding (its AdamW's).
std::vector<ParamView> optimizer_test_views() {
    std::vector<ParamView> views;
    std::size_t off = 0;
    auto add = [&](std::string name, std::vector<int> shape, std::string role) {
        views.push_back({std::move(name), off, std::move(shape), std::move(role)});
        off += views.back().numel();
    };
    add("tok_embeddings.weight", {10, 6}, "embedding");
    for (int l = 0; l < 3; l++) {
        const std::string p = "layers." + std::to_string(l) + ".";
        add(p + "attention_norm.weight", {6}, "norm");
        add(p + "attention.wq.weight", {8, 6}, "attention");
        add(p + "feed_forward.w1.weight", {12, 6}, "ffn");
    }
    add("norm.weight", {6}, "norm");
    return views;
}

std::vector<std::pair<std::string, std::string>> state_bytes(Optimizer& opt) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const OptimStateTensor& t : opt.state_tensors())
        out.emplace_back(t.name, std::string(static_cast<const char*>(t.data), t.nbytes()));
    return out;
}

TEST(WorldCommunicator, ZeroOptimizerStateGathersToTheReplicatedStateAndBack) {
    Communicator& c = world_communicator();
    const std::vector<ParamView> views = optimizer_test_views();
    const std::size_t total = views.back().offset + views.back().numel();
    for (const std::string name : {"AdamW", "Muon"}) {
        OptimizerSpec spec;
        spec.name = name;
        // ZeRO-0: every rank steps every parameter; ZeRO-1: each rank its own, then all-gather.
        std::vector<float> p0(total), g(total), p1(total), p_full(total);
        for (std::size_t i = 0; i < total; i++) p0[i] = p1[i] = 0.01f * static_cast<float>(i % 17);
        auto replicated = make_optimizer(spec, optim_params_from(views, p0.data(), g.data()));
        ZeroShard z(c, views, total);
        auto shard = make_optimizer(spec, optim_params_from(z.owned_views(), p1.data(), g.data()));
        for (int step = 1; step <= 3; step++) {
            for (std::size_t i = 0; i < total; i++)
                g[i] = 0.1f * static_cast<float>((i * 7 + step) % 11) - 0.5f;
            replicated->step(1.0);
            shard->step(1.0);
            z.all_gather_parameters(p1.data());
        }
        ASSERT_EQ(p0, p1) << name;
        auto full = c.rank() == 0
                        ? make_optimizer(spec, optim_params_from(views, p_full.data(), g.data()))
                        : nullptr;
        gather_optimizer_state(c, *shard, full.get());
        if (c.rank() == 0) {
            EXPECT_EQ(state_bytes(*full), state_bytes(*replicated)) << name;
        }
        // Back: a fresh shard takes its part of the replicated state.
        auto resumed =
            make_optimizer(spec, optim_params_from(z.owned_views(), p1.data(), g.data()));
        take_owned_state(*replicated, *resumed);
        EXPECT_EQ(state_bytes(*resumed), state_bytes(*shard)) << name;
        // The full state must come whole: a full optimizer with a parameter no rank has fails.
        std::vector<ParamView> more = views;
        more.push_back({"extra.weight", total, {4}, "norm"});
        std::vector<float> p_more(total + 4), g_more(total + 4);
        auto bigger =
            c.rank() == 0
                ? make_optimizer(spec, optim_params_from(more, p_more.data(), g_more.data()))
                : nullptr;
        if (c.rank() == 0) {
            EXPECT_THROW(gather_optimizer_state(c, *shard, bigger.get()), Error);
        } else {
            gather_optimizer_state(c, *shard, nullptr);
        }
    }
}

TEST(GradientAllReduce, OverlappedStartsEachBucketOnceBackwardHasFinishedIt) {
    RecordingCommunicator c;
    std::vector<float> g(250, 0.0f);
    c.base = g.data();
    OverlappedGradReduce reduce(c, g.data(), g.size(), 100);
    reduce.ready(200, 250);  // the last bucket, [150, 250), is not final yet
    EXPECT_TRUE(c.calls.empty());
    reduce.ready(120, 200);
    EXPECT_EQ(c.calls, (std::vector<std::pair<std::size_t, std::size_t>>{{150, 100}}));
    EXPECT_THROW(reduce.ready(0, 100), Error);  // must continue at 120
    reduce.ready(40, 120);
    EXPECT_EQ(reduce.started_early(), 2);
    EXPECT_EQ(reduce.finish(), 3);
    const std::vector<std::pair<std::size_t, std::size_t>> expected{{150, 100}, {50, 100}, {0, 50}};
    EXPECT_EQ(c.calls, expected);
    for (float v : g) ASSERT_EQ(v, 1.0f);
}

TEST(SingleProcessCommunicator, CollectivesAreTheIdentity) {
    auto c = make_single_process_communicator();
    EXPECT_EQ(c->rank(), 0);
    EXPECT_EQ(c->size(), 1);
    std::vector<float> v{1, 2, 3}, out(3);
    c->all_reduce(v.data(), 3, ReduceOp::Avg);
    EXPECT_EQ(v, (std::vector<float>{1, 2, 3}));
    c->reduce_scatter(v.data(), out.data(), 3, ReduceOp::Sum);
    EXPECT_EQ(out, v);
    EXPECT_THROW(c->broadcast(v.data(), 4, 1), Error);
}

std::string mesh_error(JobConfig cfg, int world) {
    try {
        resolve_parallel_mesh(cfg, resolve_model_args(cfg.model.flavor, cfg.model.switches()),
                              world);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(ParallelMesh, DataParallelDegreeIsInferredFromTheWorld) {
    JobConfig cfg;
    cfg.training.local_batch_size = 2;
    const ModelArgs args = resolve_model_args("tiny", {});
    const ParallelMesh m = resolve_parallel_mesh(cfg, args, 4);
    EXPECT_EQ(m.data_parallel, 4);
    EXPECT_EQ(m.data_parallel_rank(3), 3);
    EXPECT_EQ(m.describe(), "DP 4 × TP 1 × EP 1 = 4 ranks, ZeRO-0");
    cfg.training.global_batch_size = 16;
    EXPECT_EQ(cfg.grad_accum_steps(m.data_parallel), 2);
    EXPECT_EQ(cfg.grad_accum_steps(), 8);
}

TEST(ParallelMesh, InvalidMeshesAreRefusedWithTheNumbers) {
    JobConfig cfg;
    cfg.model.flavor = "tiny";  // 4 heads, 2 KV heads
    cfg.parallelism.data_parallel_degree = 3;
    EXPECT_EQ(mesh_error(cfg, 4),
              "parallelism: world size 4 is not data_parallel_degree 3 × tensor_parallel_degree 1 "
              "× expert_parallel_degree 1 = 3");
    cfg.parallelism.data_parallel_degree = -1;
    cfg.parallelism.tensor_parallel_degree = 3;
    EXPECT_EQ(mesh_error(cfg, 4),
              "parallelism: world size 4 is not divisible by tensor_parallel_degree 3 × "
              "expert_parallel_degree 1 = 3");
    EXPECT_EQ(mesh_error(cfg, 3),
              "parallelism.tensor_parallel_degree = 3: the model's 4 attention heads and 2 KV "
              "heads must both be divisible by it");
    // TP = 2 over 4 ranks: DP 2 × TP 2, the TP ranks of a replica neighbours.
    cfg.parallelism.tensor_parallel_degree = 2;
    const ParallelMesh tp2 =
        resolve_parallel_mesh(cfg, resolve_model_args(cfg.model.flavor, cfg.model.switches()), 4);
    EXPECT_EQ(tp2.describe(), "DP 2 × TP 2 × EP 1 = 4 ranks, ZeRO-0");
    EXPECT_EQ(tp2.data_parallel_rank(3), 1);
    EXPECT_EQ(tp2.tensor_parallel_rank(3), 1);
    EXPECT_EQ(tp2.tensor_parallel_rank(2), 0);
    cfg.optimizer.name = "muon";
    EXPECT_EQ(mesh_error(cfg, 2),
              "parallelism.tensor_parallel_degree = 2 with optimizer muon: its orthogonalisation "
              "needs whole matrices and TP ranks hold slices; use an element-wise optimizer "
              "(AdamW, Lion, SPAM, AdEMAMix, ScheduleFreeAdamW) or tensor_parallel_degree = 1");
    cfg.optimizer.name = "SophiaG";
    EXPECT_EQ(mesh_error(cfg, 2),
              "parallelism.tensor_parallel_degree = 2 with optimizer SophiaG: its Hessian "
              "estimate samples labels per rank; use an element-wise optimizer (AdamW, Lion, "
              "SPAM, AdEMAMix, ScheduleFreeAdamW) or tensor_parallel_degree = 1");
    cfg.optimizer.name = "AdamW";
    cfg.parallelism.zero = 1;
    EXPECT_EQ(mesh_error(cfg, 2),
              "parallelism.zero = 1 with tensor_parallel_degree = 2: ZeRO-1 over "
              "tensor-parallel shards is not implemented; use parallelism.zero = 0");
    cfg.parallelism.zero = 0;
    cfg.model.flavor = "moe_tiny";  // 4 heads: divisible; MoE is not covered
    EXPECT_EQ(mesh_error(cfg, 2),
              "parallelism.tensor_parallel_degree = 2: tensor parallelism covers the dense agpt "
              "flavors only, not agpt/moe_tiny");
    cfg.model.flavor = "tiny";
    ModelArgs odd_ffn = resolve_model_args("tiny", {});
    odd_ffn.ffn_hidden_override = 193;
    try {
        resolve_parallel_mesh(cfg, odd_ffn, 2);
        ADD_FAILURE() << "an FFN width of 193 was accepted for TP = 2";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(),
                     "parallelism.tensor_parallel_degree = 2: the model's FFN width 193 must be "
                     "divisible by it");
    }
    EXPECT_EQ(mesh_error(cfg, 2), "");
    cfg.parallelism.tensor_parallel_degree = 1;
    cfg.parallelism.expert_parallel_degree = 2;
    EXPECT_EQ(mesh_error(cfg, 2),
              "parallelism.expert_parallel_degree = 2: the model (agpt/tiny) has no experts; "
              "expert parallelism needs a MoE flavor");
    cfg.parallelism.expert_parallel_degree = 1;
    cfg.training.local_batch_size = 4;
    cfg.training.global_batch_size = 12;
    EXPECT_EQ(mesh_error(cfg, 2),
              "training.global_batch_size = 12 is not a multiple of training.local_batch_size 4 × "
              "2 data-parallel ranks = 8");
    EXPECT_EQ(mesh_error(cfg, 3), "");
}

// EP is carved out of the data ranks: DP × EP ranks read different data, TP innermost.
TEST(ParallelMesh, ExpertParallelRanksReadDifferentDataAndRefusalsNameTheNumbers) {
    JobConfig cfg;
    cfg.model.flavor = "moe_debug";  // 8 routed experts
    cfg.training.local_batch_size = 2;
    cfg.parallelism.expert_parallel_degree = 4;
    const ModelArgs args = resolve_model_args("moe_debug", {});
    const ParallelMesh m = resolve_parallel_mesh(cfg, args, 4);
    EXPECT_EQ(m.describe(), "DP 1 × TP 1 × EP 4 = 4 ranks, ZeRO-0");
    EXPECT_EQ(m.data_ranks(), 4);
    for (int r = 0; r < 4; r++) {
        EXPECT_EQ(m.data_rank(r), r);
        EXPECT_EQ(m.expert_parallel_rank(r), r);
        EXPECT_EQ(m.data_parallel_rank(r), 0);
    }
    ParallelMesh grid;  // the layout of a future DP 2 × TP 2 × EP 2 = 8 mesh
    grid.world = 8;
    grid.data_parallel = grid.tensor_parallel = grid.expert_parallel = 2;
    EXPECT_EQ(grid.data_ranks(), 4);
    EXPECT_EQ(grid.data_rank(5), 2);  // rank 5 = (dp 1 · 2 + ep 0) · 2 + tp 1
    EXPECT_EQ(grid.expert_parallel_rank(5), 0);
    EXPECT_EQ(grid.data_parallel_rank(5), 1);
    cfg.training.global_batch_size = 12;
    EXPECT_EQ(mesh_error(cfg, 4),
              "training.global_batch_size = 12 is not a multiple of training.local_batch_size 2 × "
              "4 data-parallel ranks = 8");
    cfg.training.global_batch_size = -1;
    cfg.parallelism.expert_parallel_degree = 3;
    EXPECT_EQ(mesh_error(cfg, 3),
              "parallelism.expert_parallel_degree = 3: the model's 8 routed experts are not "
              "divisible by it");
    cfg.parallelism.expert_parallel_degree = 2;
    const ParallelMesh dp_ep = resolve_parallel_mesh(cfg, args, 4);
    EXPECT_EQ(dp_ep.describe(), "DP 2 × TP 1 × EP 2 = 4 ranks, ZeRO-0");
    EXPECT_EQ(dp_ep.data_ranks(), 4);
    // rank = dp · EP + ep: ranks 0, 1 form the first replica's EP group, 0 and 2 hold experts 0-3.
    EXPECT_EQ(dp_ep.expert_parallel_rank(2), 0);
    EXPECT_EQ(dp_ep.data_parallel_rank(2), 1);
    EXPECT_EQ(dp_ep.expert_parallel_rank(1), 1);
    EXPECT_EQ(dp_ep.data_parallel_rank(1), 0);
    cfg.parallelism.zero = 1;
    EXPECT_EQ(mesh_error(cfg, 4),
              "parallelism.expert_parallel_degree = 2 with parallelism.zero = 1: not implemented "
              "yet");
    cfg.parallelism.zero = 0;
    cfg.optimizer.name = "ScheduleFreeAdamW";
    EXPECT_EQ(mesh_error(cfg, 2),
              "parallelism.expert_parallel_degree = 2 with optimizer ScheduleFreeAdamW: not "
              "implemented yet");
    cfg.optimizer.name = "AdamW";
    EXPECT_EQ(mesh_error(cfg, 2), "");
}

// Replicated ranges are summed over the ranks and shards left alone; the clipping norm counts
// replicated tensors once and every rank's shard (rank r's shard holds r + 1 in every value).
TEST(WorldCommunicator, ShardedGradientsReduceAndClipOverTheWholeModel) {
    Communicator& c = world_communicator();
    const int r = c.rank(), n = c.size();
    const std::vector<ParamView> views{{"norm", 0, {3}, "norm"},
                                       {"layers.0.moe.experts.w1", 3, {2, 2}, "ffn"},
                                       {"layers.0.moe.experts.w2", 7, {4}, "ffn"},
                                       {"router", 11, {5}, "router"}};
    const ShardedRanges ranges = sharded_ranges(views, [](const ParamView& v) {
        return v.name.find(".moe.experts.") != std::string::npos;
    });
    using Ranges = std::vector<std::pair<std::size_t, std::size_t>>;
    EXPECT_EQ(ranges.replicated, (Ranges{{0, 3}, {11, 5}}));
    EXPECT_EQ(ranges.sharded, (Ranges{{3, 8}}));
    std::vector<float> g(16, 1.0f);
    std::fill(g.begin() + 3, g.begin() + 11, static_cast<float>(r + 1));
    all_reduce_gradient_ranges(c, g.data(), ranges.replicated, 2);
    for (int i : {0, 2, 11, 15}) EXPECT_EQ(g[i], static_cast<float>(n)) << i;
    for (int i = 3; i < 11; i++) EXPECT_EQ(g[i], static_cast<float>(r + 1)) << i;
    // Replicated: 8 values of n; shards: 8 values of (k + 1) on each rank k.
    double squares = 8.0 * n * n;
    for (int k = 0; k < n; k++) squares += 8.0 * (k + 1) * (k + 1);
    const double norm = std::sqrt(squares);
    EXPECT_NEAR(clip_sharded_grad_norm(c, g.data(), ranges, norm / 2), norm, 1e-9 * norm);
    EXPECT_NEAR(g[0], n * (norm / 2) / (norm + 1e-6), 1e-5);
    EXPECT_NEAR(g[3], (r + 1) * (norm / 2) / (norm + 1e-6), 1e-5);
}

}  // namespace
}  // namespace agpt
