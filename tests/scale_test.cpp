// agpt scale's alpha–beta model and projection, against the formulas written out by hand.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
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

TEST(ScaleModel, WeakScalingProjection) {
    const LinkModel link{80.0, 5.0};
    const auto p = project_weak_scaling(1.0, 1e9, {1, 2, 64}, link);
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[0].efficiency, 1.0);
    // 2 nodes: 2·1·5e-6 + 2·(1/2)·0.1 = 0.10001 s of all-reduce.
    EXPECT_NEAR(p[1].comm_s, 0.10001, 1e-12);
    EXPECT_NEAR(p[1].efficiency, 1.0 / 1.10001, 1e-12);
    // 64 nodes: 2·63·5e-6 + 2·(63/64)·0.1.
    const double c64 = 2 * 63 * 5e-6 + 2 * 63.0 / 64 * 0.1;
    EXPECT_NEAR(p[2].step_time_s, 1.0 + c64, 1e-12);
    EXPECT_NEAR(p[2].efficiency, 1.0 / (1.0 + c64), 1e-12);
    EXPECT_THROW(project_weak_scaling(1.0, 1e9, {}, link), Error);
    EXPECT_THROW(project_weak_scaling(1.0, 1e9, {0}, link), Error);
    EXPECT_THROW(project_weak_scaling(0.0, 1e9, {1}, link), Error);
}

TEST(ScaleModel, GradientBytesAreTheFlavorsParameters) {
    // tiny: embedding and head 2·32000·64; per layer wq 64·64, wk and wv 32·64, wo 64·64,
    // w1/w2/w3 3·64·192, two norms 2·64; final norm 64.
    const double params =
        2.0 * 32000 * 64 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 192 + 128) + 64;
    const double bytes = gradient_bytes_of({"agpt", "train", "--model.flavor", "tiny"});
    EXPECT_EQ(bytes, 4.0 * params);
    EXPECT_THROW(gradient_bytes_of({"agpt", "bench"}), Error);
}

TEST(ScaleModel, TableHasOneRowPerPoint) {
    std::vector<ScalePoint> pts(2);
    pts[0] = {1, 1000, 1000, 0.5, 0, 1.0};
    pts[1] = {2, 1800, 900, 0.55, 0, 0.9};
    EXPECT_EQ(scale_table(pts, "ranks", false),
              "| ranks | tok/s total | tok/s per rank | step s | efficiency |\n"
              "| --- | --- | --- | --- | --- |\n"
              "| 1 | 1000 | 1000 | 0.5000 | 100.0% |\n"
              "| 2 | 1800 | 900 | 0.5500 | 90.0% |\n");
}

}  // namespace
}  // namespace agpt
