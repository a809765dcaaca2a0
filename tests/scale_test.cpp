// agpt scale's alpha–beta model and projection, against the formulas written out by hand.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "model/model_args.h"
#include "tools/scale.h"

namespace agpt {
namespace {

TEST(ScaleModel, RingCollectivesFollowTheAlphaBetaFormulas) {
    const LinkModel link{80.0, 5.0};  // 10 GB/s, 5 us
    // 8 ranks, 1 GB: all-reduce 2·7·5e-6 + 2·7/8·1e9/1e10 = 7e-5 + 0.175.
    EXPECT_NEAR(all_reduce_seconds(1e9, 8, link), 0.17507, 1e-12);
    EXPECT_NEAR(reduce_scatter_seconds(1e9, 8, link), 0.087535, 1e-12);
    EXPECT_NEAR(all_to_all_seconds(1e9, 8, link), 0.087535, 1e-12);
    EXPECT_EQ(all_reduce_seconds(1e9, 1, link), 0.0);
}

TEST(ScaleModel, DataParallelProjection) {
    const LinkModel link{80.0, 5.0};
    ProjectionJob job;
    job.dense_gradient_bytes = 1e9;
    job.tokens_per_step = 1000;
    const auto p = project_scaling(1.0, job, {1, 2, 64}, link);
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[0].efficiency, 1.0);
    EXPECT_EQ(p[0].dp_s, 0.0);
    // 2 nodes: 2·1·5e-6 + 2·(1/2)·0.1 = 0.10001 s of all-reduce.
    EXPECT_NEAR(p[1].dp_s, 0.10001, 1e-12);
    EXPECT_NEAR(p[1].efficiency, 1.0 / 1.10001, 1e-12);
    EXPECT_NEAR(p[1].tok_per_s_per_node, 1000 / 1.10001, 1e-9);
    // 64 nodes: 2·63·5e-6 + 2·(63/64)·0.1.
    const double c64 = 2 * 63 * 5e-6 + 2 * 63.0 / 64 * 0.1;
    EXPECT_NEAR(p[2].step_s, 1.0 + c64, 1e-12);
    EXPECT_NEAR(p[2].efficiency, 1.0 / (1.0 + c64), 1e-12);
    EXPECT_EQ(p[2].tp_s, 0.0);
    EXPECT_EQ(p[2].ep_s, 0.0);
    EXPECT_THROW(project_scaling(1.0, job, {}, link), Error);
    EXPECT_THROW(project_scaling(1.0, job, {0}, link), Error);
    EXPECT_THROW(project_scaling(0.0, job, {1}, link), Error);
    EXPECT_THROW(project_scaling(1.0, job, {1}, LinkModel{0.0, 1.0}), Error);
}

TEST(ScaleModel, OverlapHidesTheAllReduceBehindBackward) {
    const LinkModel link{80.0, 5.0};
    ProjectionJob job;
    job.dense_gradient_bytes = 1e9;
    ProjectionModel overlapped;
    overlapped.overlap = true;
    // compute 0.09 s: backward 0.06 s hides 0.06 of the 0.10001 s all-reduce on 2 nodes.
    const auto p = project_scaling(0.09, job, {1, 2}, link, overlapped);
    EXPECT_NEAR(p[1].dp_exposed_s, 0.10001 - 0.06, 1e-12);
    EXPECT_NEAR(p[1].step_s, 0.09 + 0.10001 - 0.06, 1e-12);
    // compute 1 s: backward 0.667 s hides all of it.
    EXPECT_EQ(project_scaling(1.0, job, {1, 2}, link, overlapped)[1].efficiency, 1.0);
}

TEST(ScaleModel, TensorAndExpertParallelTerms) {
    const LinkModel link{80.0, 5.0};  // 1e10 B/s between nodes
    ProjectionJob job;
    job.dense_gradient_bytes = 1e9;
    job.expert_gradient_bytes = 4e9;
    job.n_layers = 2;
    job.n_moe_layers = 1;
    job.dim = 1000;
    job.top_k = 2;
    job.tokens_per_step = 1000;  // activations: 1000·1000·2 bytes = 2e6
    job.tensor_parallel = 4;
    job.expert_parallel = 2;
    ProjectionModel model;
    model.intra_node = {160.0, 1.0};  // 2e10 B/s
    const auto p = project_scaling(1.0, job, {2, 8}, link, model);
    // TP: (4·2 + 1) all-reduces of 2e6 bytes over 4 ranks: 2·3·1e-6 + 2·(3/4)·2e6/2e10.
    const double tp = 9 * (6e-6 + 1.5e-4);
    // EP: 4·1 all-to-alls of 2e6·2 bytes over 2 nodes: 1·5e-6 + (1/2)·4e6/1e10.
    const double ep = 4 * (5e-6 + 2e-4);
    // DP on 8 nodes: dense over 8, the experts' 4e9/2 over the 4 nodes holding the same ones.
    const double dp8 = (14 * 5e-6 + 2 * 7.0 / 8 * 0.1) + (6 * 5e-6 + 2 * 3.0 / 4 * 0.2);
    EXPECT_NEAR(p[1].tp_s, tp, 1e-12);
    EXPECT_NEAR(p[1].ep_s, ep, 1e-12);
    EXPECT_NEAR(p[1].dp_s, dp8, 1e-12);
    EXPECT_NEAR(p[1].step_s, 1.0 + tp + ep + dp8, 1e-12);
    EXPECT_NEAR(p[1].efficiency, p[0].step_s / p[1].step_s, 1e-15);
    EXPECT_THROW(project_scaling(1.0, job, {3}, link, model), Error);  // not a multiple of EP
    job.n_moe_layers = 0;
    EXPECT_THROW(project_scaling(1.0, job, {2}, link, model), Error);  // EP without experts
}

TEST(ScaleModel, ProjectionJobOfTheTrainCommand) {
    // tiny: embedding and head 2·32000·64; per layer wq 64·64, wk and wv 32·64, wo 64·64,
    // w1/w2/w3 3·64·192, two norms 2·64; final norm 64.
    const double params =
        2.0 * 32000 * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 192 + 128) + 64;
    const ProjectionJob job =
        projection_job_of({"agpt", "train", "--model.flavor", "tiny", "--training.local_batch_size",
                           "4", "--training.global_batch_size", "12", "--training.seq_len", "64"});
    EXPECT_EQ(job.dense_gradient_bytes, 4.0 * params);
    EXPECT_EQ(job.expert_gradient_bytes, 0.0);
    EXPECT_EQ(job.n_layers, 2);
    EXPECT_EQ(job.dim, 64);
    EXPECT_EQ(job.tokens_per_step, 4.0 * 64 * 3);
    EXPECT_THROW(projection_job_of({"agpt", "bench"}), Error);

    const ProjectionJob moe = projection_job_of({"agpt", "train", "--model.flavor", "moe_debug",
                                                 "--parallelism.expert_parallel_degree", "2"});
    const ModelArgs a = resolve_model_args("moe_debug", {});
    const double experts = static_cast<double>(a.n_moe_layers()) * a.n_experts * a.expert_params();
    EXPECT_GT(experts, 0.0);
    EXPECT_EQ(moe.expert_gradient_bytes, 4.0 * experts);
    EXPECT_EQ(moe.dense_gradient_bytes + moe.expert_gradient_bytes, 4.0 * a.num_params());
    EXPECT_EQ(moe.n_moe_layers, a.n_moe_layers());
    EXPECT_EQ(moe.top_k, a.top_k);
    EXPECT_EQ(moe.expert_parallel, 2);
}

TEST(ScaleModel, ProjectionTableHasOneRowPerPoint) {
    ProjectedPoint p;
    p.nodes = 4;
    p.step_s = 1.25;
    p.dp_s = 0.25;
    p.dp_exposed_s = 0.25;
    p.tok_per_s_per_node = 800;
    p.efficiency = 0.8;
    EXPECT_EQ(projection_table({p}),
              "| nodes | tok/s per node | step s | DP all-reduce s | exposed s | TP s | EP s | "
              "efficiency |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n"
              "| 4 | 800 | 1.2500 | 0.2500 | 0.2500 | 0.0000 | 0.0000 | 80.0% |\n");
}

TEST(ScaleModel, TableHasOneRowPerPoint) {
    std::vector<ScalePoint> pts(2);
    pts[0] = {1, 1000, 1000, 0.5, 1.0};
    pts[1] = {2, 1800, 900, 0.55, 0.9};
    EXPECT_EQ(scale_table(pts),
              "| ranks | tok/s total | tok/s per rank | step s | efficiency |\n"
              "| --- | --- | --- | --- | --- |\n"
              "| 1 | 1000 | 1000 | 0.5000 | 100.0% |\n"
              "| 2 | 1800 | 900 | 0.5500 | 90.0% |\n");
}

}  // namespace
}  // namespace agpt
