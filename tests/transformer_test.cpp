#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/transformer.h"

namespace agpt {
namespace {

struct Moments {
    double mean = 0, std = 0, max_abs = 0;
};

Moments moments(const float* p, std::size_t n) {
    double s = 0, ss = 0, m = 0;
    for (std::size_t i = 0; i < n; i++) {
        s += p[i];
        ss += static_cast<double>(p[i]) * p[i];
        m = std::max(m, std::fabs(static_cast<double>(p[i])));
    }
    const double mean = s / static_cast<double>(n);
    return {mean, std::sqrt(ss / static_cast<double>(n) - mean * mean), m};
}

ModelArgs test_args() {
    ModelArgs a = find_flavor("debugmodel")->args;
    a.vocab_size = 4096;
    a.n_layers = 3;
    return a;
}

// design.md's schemes: agpt uses std √(2/(5·dim)) for linears, torchtitan 0.02; both divide the
// output projections (wo, w2, w3) by √(2·(layer+1)); embedding N(0,1); head std dim^-½ cut at 3σ.
TEST(TransformerInit, SchemesGiveTheDocumentedStatistics) {
    const ModelArgs a = test_args();
    for (const char* scheme : {"agpt", "torchtitan"}) {
        Transformer m(a, 1, 8);
        m.init_weights(scheme, 1);
        const double linear = std::string(scheme) == "agpt" ? std::sqrt(2.0 / (5.0 * a.dim)) : 0.02;
        for (const auto& v : m.param_views()) {
            const Moments mo = moments(m.params().data() + v.offset, v.numel());
            double expected_std = linear;
            if (v.role == "norm") {
                EXPECT_EQ(mo.mean, 1.0) << v.name;
                EXPECT_EQ(mo.std, 0.0) << v.name;
                continue;
            }
            if (v.role == "embedding") expected_std = 1.0;
            if (v.role == "head") {
                expected_std = 1.0 / std::sqrt(a.dim) * 0.9866;  // std of N(0,1) cut at ±3
                EXPECT_LE(mo.max_abs, 3.0 / std::sqrt(a.dim) + 1e-7) << v.name;
            }
            for (const char* out : {"wo.weight", "w2.weight", "w3.weight"})
                if (v.name.ends_with(out))
                    expected_std /= std::sqrt(2.0 * (std::stoi(v.name.substr(7)) + 1));
            EXPECT_NEAR(mo.mean, 0.0, 4 * expected_std / std::sqrt(v.numel())) << v.name;
            EXPECT_NEAR(mo.std, expected_std, 0.03 * expected_std) << scheme << " " << v.name;
        }
    }
}

TEST(TransformerInit, SameSeedSameWeightsOtherSeedDiffers) {
    const ModelArgs a = test_args();
    Transformer m1(a, 1, 8), m2(a, 1, 8), m3(a, 1, 8);
    m1.init_weights("agpt", 5);
    m2.init_weights("agpt", 5);
    m3.init_weights("agpt", 6);
    EXPECT_EQ(m1.params(), m2.params());
    EXPECT_NE(m1.params(), m3.params());
    EXPECT_THROW(m1.init_weights("xavier", 1), Error);
}

TEST(Transformer, ViewsTileTheFlatBufferAndQkvIsFused) {
    const ModelArgs a = test_args();
    Transformer m(a, 1, 8);
    std::size_t next = 0;
    for (const auto& v : m.param_views()) {
        EXPECT_EQ(v.offset, next) << v.name;
        next += v.numel();
    }
    EXPECT_EQ(next, m.params().size());
    EXPECT_EQ(static_cast<long>(next), a.num_params());
    const auto& wq = m.view("layers.1.attention.wq.weight");
    EXPECT_EQ(m.view("layers.1.attention.wk.weight").offset, wq.offset + wq.numel());
    const auto& w1 = m.view("layers.1.feed_forward.w1.weight");
    EXPECT_EQ(m.view("layers.1.feed_forward.w3.weight").offset, w1.offset + w1.numel());
    EXPECT_THROW(m.view("layers.9.attention.wq.weight"), Error);
}

TEST(Transformer, LossOfLogitsMatchesFusedHeadAndLastLogits) {
    ModelArgs a = find_flavor("tiny")->args;
    a.vocab_size = 50;
    const int B = 2, T = 12;
    Transformer m(a, B, T);
    m.init_weights("agpt", 3);
    Rng rng(9);
    std::vector<int32_t> tok(B * T), tgt(B * T);
    for (auto& t : tok) t = static_cast<int32_t>(rng.below(50));
    for (auto& t : tgt) t = static_cast<int32_t>(rng.below(50));
    tgt[3] = -1;  // ignored
    std::vector<float> logits(static_cast<std::size_t>(B) * T * 50);
    m.forward_logits(tok.data(), B, T, logits.data());
    double expected = 0;
    for (int i = 0; i < B * T; i++) {
        if (tgt[i] < 0) continue;
        const float* row = logits.data() + i * 50;
        double mx = row[0], s = 0;
        for (int v = 1; v < 50; v++) mx = std::max(mx, static_cast<double>(row[v]));
        for (int v = 0; v < 50; v++) s += std::exp(row[v] - mx);
        expected += mx + std::log(s) - row[tgt[i]];
    }
    EXPECT_NEAR(m.forward_loss(tok.data(), tgt.data(), B, T), expected, 1e-4 * expected);
    m.zero_grad();
    EXPECT_NEAR(m.forward_backward(tok.data(), tgt.data(), B, T, 1.0), expected, 1e-4 * expected);

    // The last position of sequence 1 seen alone (causal: only its own prefix matters).
    std::vector<float> last(50);
    m.last_logits(tok.data() + T, T, last.data());
    for (int v = 0; v < 50; v++) EXPECT_NEAR(last[v], logits[(2 * T - 1) * 50 + v], 1e-4) << v;
}

TEST(Transformer, RefusesTokensOutsideTheVocabularyAndOversizedBatches) {
    ModelArgs a = find_flavor("tiny")->args;
    a.vocab_size = 10;
    Transformer m(a, 1, 4);
    std::vector<int32_t> tok = {1, 2, 10, 3}, tgt = {1, 2, 3, 4};
    EXPECT_THROW(m.forward_loss(tok.data(), tgt.data(), 1, 4), Error);
    tok[2] = 3;
    tgt[0] = 11;
    EXPECT_THROW(m.forward_loss(tok.data(), tgt.data(), 1, 4), Error);
    EXPECT_THROW(m.forward_loss(tok.data(), tgt.data(), 2, 4), Error);
}

}  // namespace
}  // namespace agpt
