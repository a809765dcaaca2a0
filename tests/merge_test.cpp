#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/transformer.h"
#include "tools/merge.h"
#include "train/checkpoint.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

TEST(MergeWsm, WeightsAreAConvexCombinationAndLinearDecayIsTheUniformAverage) {
    for (const char* decay : {"linear", "cosine", "1-sqrt"})
        for (int n : {1, 2, 5, 9}) {
            const auto c = wsm_weights(decay, n);
            ASSERT_EQ(static_cast<int>(c.size()), n);
            EXPECT_NEAR(std::accumulate(c.begin(), c.end(), 0.0), 1.0, 1e-12) << decay << n;
            for (double x : c) EXPECT_GE(x, -1e-15) << decay << n;
        }
    for (double x : wsm_weights("linear", 5)) EXPECT_NEAR(x, 0.2, 1e-12);
    // Cosine over 3 checkpoints: w1 = f(1/3) = 0.75, w2 = f(2/3) = 0.25 -> c = (0.25, 0.5, 0.25).
    const auto c = wsm_weights("cosine", 3);
    EXPECT_NEAR(c[0], 0.25, 1e-12);
    EXPECT_NEAR(c[1], 0.5, 1e-12);
    EXPECT_NEAR(c[2], 0.25, 1e-12);
    // The gradient weights implied by the merge (tail sums) reproduce the decay.
    const auto s = wsm_weights("1-sqrt", 4);
    EXPECT_NEAR(s[1] + s[2] + s[3], 1.0 - std::sqrt(0.25), 1e-12);
    EXPECT_NEAR(s[3], 1.0 - std::sqrt(0.75), 1e-12);
    EXPECT_THROW(wsm_weights("step", 3), Error);
}

struct Checkpoints {
    fs::path root;
    std::vector<std::string> dirs;
    std::vector<std::vector<float>> params;
    explicit Checkpoints(const std::string& name, int n, int dim = 64) {
        root = fs::temp_directory_path() / ("agpt_merge_test_" + name);
        fs::remove_all(root);
        ModelArgs a = find_flavor("tiny")->args;
        a.vocab_size = 30;
        a.dim = dim;
        Transformer m(a, 1, 4);
        const CheckpointStore store(root.string());
        for (int i = 0; i < n; i++) {
            m.init_weights("agpt", 10 + i);
            params.push_back(m.params());
            dirs.push_back(store.save({i + 1, 0, 0}, m, nullptr, ""));
        }
    }
};

TEST(Merge, WeightedAverageOfTensorsInFp64) {
    Checkpoints ck("avg", 3);
    const fs::path out = ck.root / "merged";
    merge_checkpoints(ck.dirs, {0.5, 0.25, 0.25}, out.string());
    verify_checkpoint(out.string());
    ModelArgs a = find_flavor("tiny")->args;
    a.vocab_size = 30;
    Transformer m(a, 1, 4);
    load_model_weights(out.string(), m);
    for (std::size_t i = 0; i < m.params().size(); i++) {
        const double expected = 0.5 * static_cast<double>(ck.params[0][i]) +
                                0.25 * static_cast<double>(ck.params[1][i]) +
                                0.25 * static_cast<double>(ck.params[2][i]);
        ASSERT_EQ(m.params()[i], static_cast<float>(expected)) << i;
    }
}

TEST(Merge, RefusesBadWeightsMismatchedShapesAndExistingOutput) {
    Checkpoints a("bad_a", 2), b("bad_b", 1, 32);
    EXPECT_THROW(merge_checkpoints(a.dirs, {0.5, 0.6}, (a.root / "o1").string()), Error);
    EXPECT_THROW(merge_checkpoints(a.dirs, {1.0}, (a.root / "o2").string()), Error);
    EXPECT_THROW(merge_checkpoints(a.dirs, {1.5, -0.5}, (a.root / "o3").string()), Error);
    EXPECT_THROW(merge_checkpoints({a.dirs[0], b.dirs[0]}, {0.5, 0.5}, (a.root / "o4").string()),
                 Error);
    EXPECT_THROW(merge_checkpoints(a.dirs, {0.5, 0.5}, a.dirs[0]), Error);  // exists
    EXPECT_FALSE(fs::exists(a.root / "o1"));
    fs::resize_file(fs::path(a.dirs[1]) / "model.safetensors", 100);
    EXPECT_THROW(merge_checkpoints(a.dirs, {0.5, 0.5}, (a.root / "o5").string()), Error);
}

}  // namespace
}  // namespace agpt
