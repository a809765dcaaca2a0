// LanguageModel::set_grads_ready: backward reports stretches of the gradient buffer in
// descending, contiguous order covering it once, and a reported stretch is final — what an
// all-reduce started on it at that moment would send equals the gradient forward_backward
// leaves.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "model/model_args.h"
#include "model/model_zoo.h"

namespace agpt {
namespace {

void expect_ranges_final(const std::string& family, const std::string& flavor, int layers,
                         ActivationCheckpoint checkpoint = ActivationCheckpoint::none) {
    const int B = 2, T = 8, V = 64;
    auto model = make_language_model(family, flavor, ModelSwitches{}, V, B, T, checkpoint);
    model->init_weights(family == "gpt2" ? "gpt2" : "agpt", 5);
    Rng rng(3);
    std::vector<int32_t> tok(B * T), tgt(B * T);
    for (auto& t : tok) t = static_cast<int32_t>(rng.below(V));
    for (auto& t : tgt) t = static_cast<int32_t>(rng.below(V));
    const std::vector<float>& g = model->grads();
    // Two calls: the second accumulates onto the first, as gradient accumulation does.
    model->zero_grad();
    model->forward_backward(tok.data(), tgt.data(), B, T, 0.5);
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    std::vector<float> seen(g.size(), -1e30f);
    model->set_grads_ready([&](std::size_t begin, std::size_t end) {
        ranges.emplace_back(begin, end);
        std::copy(g.begin() + static_cast<long>(begin), g.begin() + static_cast<long>(end),
                  seen.begin() + static_cast<long>(begin));
    });
    model->forward_backward(tok.data(), tgt.data(), B, T, 0.5);
    model->set_grads_ready({});
    // The head (and final norm), each layer, the embedding.
    ASSERT_EQ(ranges.size(), static_cast<std::size_t>(layers + 2));
    std::size_t expected_end = g.size();
    for (const auto& [begin, end] : ranges) {
        EXPECT_EQ(end, expected_end);
        EXPECT_LT(begin, end);
        expected_end = begin;
    }
    EXPECT_EQ(expected_end, 0u);
    for (std::size_t i = 0; i < g.size(); i++) ASSERT_EQ(seen[i], g[i]) << family << " " << i;
    // Unset: no reports.
    ranges.clear();
    model->forward_backward(tok.data(), tgt.data(), B, T, 0.5);
    EXPECT_TRUE(ranges.empty());
}

TEST(GradsReady, TransformerReportsFinalRangesFromTheHeadToTheEmbedding) {
    expect_ranges_final("agpt", "tiny", resolve_model_args("tiny", ModelSwitches{}).n_layers);
}

TEST(GradsReady, TransformerUnderActivationCheckpointingToo) {
    expect_ranges_final("agpt", "tiny", resolve_model_args("tiny", ModelSwitches{}).n_layers,
                        ActivationCheckpoint::full);
}

TEST(GradsReady, Gpt2ReportsFinalRangesWithTheTiedEmbeddingLast) {
    expect_ranges_final("gpt2", "gpt2_tiny", 2);
}

}  // namespace
}  // namespace agpt
