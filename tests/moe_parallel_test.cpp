// MoE across ranks. WorldCommunicator.* run as one rank in the plain suite and as three ranks in
// `communicator_mpi`; the expected values are computed on each rank for any world size.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.h"
#include "dist/communicator.h"
#include "model/model_args.h"
#include "model/moe.h"
#include "model/transformer.h"

namespace agpt {
namespace {

// Each rank routes its own batch; after sum_expert_loads every rank holds the load of all the
// ranks' batches together (counted here by one model that runs every rank's batch) and the bias
// update leaves the same biases on every rank.
TEST(WorldCommunicator, MoeExpertLoadsAreSummedSoEveryRankSetsTheSameBias) {
    Communicator& comm = world_communicator();
    const int r = comm.rank(), n = comm.size();
    ModelArgs a = find_flavor("moe_tiny")->args;
    a.vocab_size = 97;
    const int B = 2, T = 12;
    auto batch = [&](int rank, std::vector<int32_t>& tokens, std::vector<int32_t>& targets) {
        Rng rng(100 + static_cast<uint64_t>(rank));
        tokens.resize(B * T);
        targets.resize(B * T);
        for (auto& t : tokens) t = static_cast<int32_t>(rng.below(97));
        for (auto& t : targets) t = static_cast<int32_t>(rng.below(97));
    };
    Transformer model(a, B, T), every_batch(a, B, T);
    model.init_weights("agpt", 5);
    every_batch.init_weights("agpt", 5);
    std::vector<int32_t> tokens, targets;
    batch(r, tokens, targets);
    model.forward_backward(tokens.data(), targets.data(), B, T, 1.0);
    for (int rank = 0; rank < n; rank++) {
        batch(rank, tokens, targets);
        every_batch.forward_backward(tokens.data(), targets.data(), B, T, 1.0);
    }
    model.sum_expert_loads(comm);
    const std::vector<int> layers = model.moe_layer_ids();
    ASSERT_FALSE(layers.empty());
    bool moved = false;
    for (int layer : layers) {
        EXPECT_EQ(model.moe_layer(layer).tokens_per_expert(),
                  every_batch.moe_layer(layer).tokens_per_expert())
            << layer;
        double total = 0;
        for (double t : model.moe_layer(layer).tokens_per_expert()) total += t;
        EXPECT_EQ(total, static_cast<double>(n * B * T * a.top_k));
    }
    model.update_expert_bias(1e-3);
    every_batch.update_expert_bias(1e-3);
    std::vector<float> biases;
    for (int layer : layers) {
        const std::string name = "layers." + std::to_string(layer) + ".moe.expert_bias";
        const float* mine = model.param(name);
        const float* expected = every_batch.param(name);
        for (int e = 0; e < a.n_experts; e++) {
            EXPECT_EQ(mine[e], expected[e]) << name << " " << e;
            moved |= mine[e] != 0.0f;
            biases.push_back(mine[e]);
        }
    }
    EXPECT_TRUE(moved) << "the bias update did not move any bias";
    // Bit-identical on every rank: rank 0's biases against each rank's.
    std::vector<float> all(biases.size() * n);
    comm.all_gather(biases.data(), all.data(), biases.size());
    for (int rank = 1; rank < n; rank++)
        for (std::size_t i = 0; i < biases.size(); i++)
            ASSERT_EQ(all[rank * biases.size() + i], all[i]) << "rank " << rank << " bias " << i;
}

std::vector<float> random_values(Rng& rng, std::size_t n, double scale) {
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(scale * rng.normal());
    return v;
}

// Expert parallelism over all ranks (E = 2 per rank): each rank routes its own tokens, sends rows
// to the experts' ranks and gets their outputs back. Against one MoE layer holding every expert
// run on the same rank's tokens: the same output and input gradient, the same router and shared
// gradients, and each local expert's gradient equal to the sum over ranks of the full layer's.
// The second case biases rank 0's experts away, so that rank 0 receives no rows at all and its
// experts' gradients are exactly zero.
TEST(WorldCommunicator, MoeExpertParallelLayerEqualsTheLayerWithEveryExpert) {
    Communicator& comm = world_communicator();
    const int r = comm.rank(), n = comm.size();
    MoeShape s;
    s.dim = 8;
    s.n_experts = 2 * n;
    s.n_shared_experts = 1;
    s.top_k = 2;
    s.hidden = 6;
    const int N = 10, D = s.dim, E = s.n_experts, F = s.hidden, El = 2;
    const std::size_t expert_size = static_cast<std::size_t>(F) * D;
    for (const bool starve_rank0 : {false, true}) {
        SCOPED_TRACE(starve_rank0 ? "rank 0's experts get no tokens" : "unbiased");
        Rng weights_rng(7);  // the same weights on every rank
        const auto router = random_values(weights_rng, static_cast<std::size_t>(E) * D, 0.5);
        const auto w1 = random_values(weights_rng, E * expert_size, 0.3);
        const auto w2 = random_values(weights_rng, E * expert_size, 0.3);
        const auto w3 = random_values(weights_rng, E * expert_size, 0.3);
        const auto sw1 = random_values(weights_rng, expert_size, 0.3);
        const auto sw2 = random_values(weights_rng, expert_size, 0.3);
        const auto sw3 = random_values(weights_rng, expert_size, 0.3);
        std::vector<float> bias(E, 0.0f);
        if (starve_rank0) std::fill_n(bias.begin(), El, -100.0f);
        Rng data_rng(100 + static_cast<uint64_t>(r));  // each rank its own tokens
        const auto x = random_values(data_rng, static_cast<std::size_t>(N) * D, 1.0);
        const auto dout = random_values(data_rng, static_cast<std::size_t>(N) * D, 1.0);

        MoeWeights<float> full_w;
        full_w.router = router.data();
        full_w.w1 = w1.data();
        full_w.w2 = w2.data();
        full_w.w3 = w3.data();
        full_w.shared_w1 = sw1.data();
        full_w.shared_w2 = sw2.data();
        full_w.shared_w3 = sw3.data();
        full_w.expert_bias = bias.data();
        MoeWeights<float> local_w = full_w;
        const std::size_t first = static_cast<std::size_t>(r) * El * expert_size;
        local_w.w1 += first;
        local_w.w2 += first;
        local_w.w3 += first;

        struct Grads {
            std::vector<float> router, w1, w2, w3, sw1, sw2, sw3, dx, out;
            MoeGrads<float> view() {
                MoeGrads<float> g;
                g.router = router.data();
                g.w1 = w1.data();
                g.w2 = w2.data();
                g.w3 = w3.data();
                g.shared_w1 = sw1.data();
                g.shared_w2 = sw2.data();
                g.shared_w3 = sw3.data();
                return g;
            }
        };
        auto run = [&](MoeFfn<float>& layer, const MoeWeights<float>& w, int experts) {
            Grads g;
            g.router.assign(static_cast<std::size_t>(E) * D, 0.0f);
            for (auto* v : {&g.w1, &g.w2, &g.w3}) v->assign(experts * expert_size, 0.0f);
            for (auto* v : {&g.sw1, &g.sw2, &g.sw3}) v->assign(expert_size, 0.0f);
            g.dx.assign(static_cast<std::size_t>(N) * D, 0.0f);
            g.out.assign(static_cast<std::size_t>(N) * D, 0.0f);
            layer.forward(g.out.data(), x.data(), w, N, true);
            layer.backward(g.dx.data(), g.view(), dout.data(), x.data(), w, N);
            return g;
        };
        MoeFfn<float> every_expert(s, N), parallel(s, N);
        parallel.set_expert_parallel(&comm);
        ASSERT_EQ(parallel.local_experts(), El);
        ASSERT_EQ(parallel.first_local_expert(), r * El);
        Grads ref = run(every_expert, full_w, E);
        Grads got = run(parallel, local_w, El);
        EXPECT_EQ(parallel.tokens_per_expert(), every_expert.tokens_per_expert());
        auto expect_close = [](const std::vector<float>& a, const std::vector<float>& b,
                               const char* what) {
            ASSERT_EQ(a.size(), b.size()) << what;
            double worst = 0;
            for (std::size_t i = 0; i < a.size(); i++)
                worst = std::max(worst, std::abs(double(a[i]) - b[i]) / (1.0 + std::abs(b[i])));
            EXPECT_LE(worst, 1e-5) << what;
        };
        expect_close(got.out, ref.out, "output");
        expect_close(got.dx, ref.dx, "input gradient");
        expect_close(got.router, ref.router, "router gradient");
        expect_close(got.sw1, ref.sw1, "shared w1 gradient");
        expect_close(got.sw2, ref.sw2, "shared w2 gradient");
        expect_close(got.sw3, ref.sw3, "shared w3 gradient");
        // An expert's gradient collects every rank's tokens routed to it.
        for (auto* v : {&ref.w1, &ref.w2, &ref.w3})
            comm.all_reduce(v->data(), v->size(), ReduceOp::Sum);
        auto local = [&](const std::vector<float>& full) {
            return std::vector<float>(full.begin() + static_cast<long>(first),
                                      full.begin() + static_cast<long>(first + El * expert_size));
        };
        expect_close(got.w1, local(ref.w1), "expert w1 gradient");
        expect_close(got.w2, local(ref.w2), "expert w2 gradient");
        expect_close(got.w3, local(ref.w3), "expert w3 gradient");
        double moved = 0;
        for (float v : got.w1) moved = std::max(moved, double(std::abs(v)));
        if (starve_rank0 && n > 1 && r == 0) {
            EXPECT_EQ(moved, 0.0) << "rank 0's experts received rows";
            for (float v : got.w2) EXPECT_EQ(v, 0.0f);
        } else {
            EXPECT_GT(moved, 0.0) << "rank " << r << "'s experts received no rows";
        }
    }
}

// A model whose routed experts are divided over the ranks starts from the full model's weights
// (each rank the slice of its experts) and, on each rank's own batch, gives the same loss, the
// same gradients of the replicated tensors and, per expert, the sum over ranks of the full
// model's gradients.
TEST(WorldCommunicator, ExpertParallelModelHasTheFullModelsWeightsLossAndGradients) {
    Communicator& comm = world_communicator();
    const int r = comm.rank(), n = comm.size();
    ModelArgs a = find_flavor("moe_tiny")->args;
    a.vocab_size = 97;
    a.n_experts = 2 * n;
    const int B = 2, T = 12;
    Transformer full(a, B, T), sharded(a, B, T);
    sharded.set_expert_parallel(&comm);
    full.init_weights("agpt", 5);
    sharded.init_weights("agpt", 5);
    Rng rng(100 + static_cast<uint64_t>(r));
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(97));
    for (auto& t : targets) t = static_cast<int32_t>(rng.below(97));
    const double full_loss = full.forward_backward(tokens.data(), targets.data(), B, T, 0.01);
    const double sharded_loss = sharded.forward_backward(tokens.data(), targets.data(), B, T, 0.01);
    EXPECT_NEAR(sharded_loss, full_loss, 1e-5 * full_loss);
    int shards = 0;
    for (const ParamView& v : sharded.param_views()) {
        const ParamView& f = full.view(v.name);
        const float* p = sharded.params().data() + v.offset;
        const float* g = sharded.grads().data() + v.offset;
        std::vector<float> fp(full.params().begin() + static_cast<long>(f.offset),
                              full.params().begin() + static_cast<long>(f.offset + f.numel()));
        std::vector<float> fg(full.grads().begin() + static_cast<long>(f.offset),
                              full.grads().begin() + static_cast<long>(f.offset + f.numel()));
        std::size_t first = 0;
        if (sharded.is_expert_shard(v)) {
            shards++;
            ASSERT_EQ(v.numel() * n, f.numel()) << v.name;
            EXPECT_EQ(v.shape[0], 2) << v.name;
            first = r * v.numel();
            comm.all_reduce(fg.data(), fg.size(), ReduceOp::Sum);
        } else {
            ASSERT_EQ(v.numel(), f.numel()) << v.name;
        }
        double worst = 0;
        for (std::size_t i = 0; i < v.numel(); i++) {
            ASSERT_EQ(p[i], fp[first + i]) << v.name << " " << i;
            worst = std::max(worst, std::abs(double(g[i]) - fg[first + i]) /
                                        (1e-3 + std::abs(double(fg[first + i]))));
        }
        EXPECT_LE(worst, 1e-4) << v.name;
    }
    EXPECT_EQ(shards, n > 1 ? 3 * a.n_moe_layers() : 0);
}

}  // namespace
}  // namespace agpt
