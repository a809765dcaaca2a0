// The key/value-cache decode path against the full forward: the decode attention kernel against
// attention_forward on the same data, the cached model's logits against forward_logits, and
// cached generation against uncached generation token for token.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_decode.h"
#include "model/kv_cache.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "tools/generate.h"

namespace agpt {
namespace {

template <typename T>
std::vector<T> randn(Rng& rng, std::size_t n) {
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(rng.normal());
    return v;
}

struct Shape {
    int T, H, KV, hd;
    int row() const { return (H + 2 * KV) * hd; }
};

// Decode attention reads the keys and values straight out of the fused qkv rows (stride =
// row), which is the layout attention_forward reads, so both see identical inputs.
template <typename T>
void check_decode_matches_forward(const Shape& s, double tol) {
    Rng rng(17);
    const std::vector<T> qkv = randn<T>(rng, static_cast<std::size_t>(s.T) * s.row());
    const int A = s.H * s.hd;
    std::vector<T> full(static_cast<std::size_t>(s.T) * A),
        lse(static_cast<std::size_t>(s.H) * s.T);
    cpu::attention_forward<T>(full.data(), lse.data(), qkv.data(), 1, s.T, s.H, s.KV, s.hd);
    const T* k = qkv.data() + A;
    const T* v = qkv.data() + A + s.KV * s.hd;
    // Every query at once (a prefill), the last one alone (a decode step), and a few at the end
    // with a past (a chunked prefill).
    for (int M : {s.T, 1, 3}) {
        const int past = s.T - M;
        std::vector<T> out(static_cast<std::size_t>(M) * A);
        cpu::attention_decode<T>(out.data(), qkv.data() + static_cast<std::size_t>(past) * s.row(),
                                 s.row(), k, v, s.row(), M, past, s.H, s.KV, s.hd);
        double worst = 0.0;
        for (int m = 0; m < M; m++)
            for (int i = 0; i < A; i++) {
                const double a = out[static_cast<std::size_t>(m) * A + i];
                const double b = full[static_cast<std::size_t>(past + m) * A + i];
                worst = std::max(worst, std::fabs(a - b) / std::max(1.0, std::fabs(b)));
            }
        EXPECT_LT(worst, tol) << "T=" << s.T << " H=" << s.H << " KV=" << s.KV << " M=" << M;
    }
}

TEST(KvCache, DecodeAttentionEqualsFullAttentionRows) {
    for (const Shape& s :
         {Shape{1, 2, 2, 8}, Shape{70, 4, 2, 16}, Shape{130, 6, 6, 8}, Shape{65, 8, 1, 4}}) {
        check_decode_matches_forward<double>(s, 1e-12);
        check_decode_matches_forward<float>(s, 2e-5);
    }
}

ModelArgs small_args(int kv_heads) {
    ModelArgs a = find_flavor("tiny")->args;
    a.vocab_size = 50;
    a.n_kv_heads = kv_heads;
    return a;
}

std::vector<int32_t> random_ids(uint64_t seed, int n, int V) {
    Rng rng(seed);
    std::vector<int32_t> ids(n);
    for (auto& t : ids) t = static_cast<int32_t>(rng.below(V));
    return ids;
}

TEST(KvCache, LogitsMatchFullForwardAtEveryPosition) {
    for (int kv : {2, 4}) {  // GQA and plain multi-head
        const ModelArgs a = small_args(kv);
        const int T = 300;  // past the 256-row prefill chunk
        Transformer model(a, 1, T);
        model.init_weights("agpt", 3);
        const std::vector<int32_t> ids = random_ids(5, T, a.vocab_size);
        std::vector<float> full(static_cast<std::size_t>(T) * a.vocab_size);
        model.forward_logits(ids.data(), 1, T, full.data());

        auto worst_at = [&](int pos, const std::vector<float>& got) {
            double w = 0.0;
            for (int v = 0; v < a.vocab_size; v++)
                w = std::max(w, std::fabs(static_cast<double>(got[v]) -
                                          full[static_cast<std::size_t>(pos) * a.vocab_size + v]));
            return w;
        };
        KvCache cache(model, T);
        std::vector<float> logits(a.vocab_size);
        cache.append(ids.data(), 7, logits.data());  // prefill
        EXPECT_LT(worst_at(6, logits), 1e-4);
        for (int t = 7; t < 40; t++) {  // decode steps
            cache.append(&ids[t], 1, logits.data());
            EXPECT_LT(worst_at(t, logits), 1e-4) << "position " << t;
        }
        EXPECT_EQ(cache.length(), 40);
        cache.clear();
        cache.append(ids.data(), T, logits.data());  // one prefill in two chunks
        EXPECT_LT(worst_at(T - 1, logits), 1e-4);
        EXPECT_THROW(cache.append(ids.data(), 1, logits.data()), Error);  // full
    }
}

TEST(KvCache, RefusesBadInput) {
    const ModelArgs a = small_args(2);
    Transformer model(a, 1, 4);
    EXPECT_THROW(KvCache(model, 0), Error);
    EXPECT_THROW(KvCache(model, a.max_seq_len + 1), Error);
    KvCache cache(model, 8);
    std::vector<float> logits(a.vocab_size);
    const int32_t bad = a.vocab_size;
    EXPECT_THROW(cache.append(&bad, 1, logits.data()), Error);
    EXPECT_EQ(cache.length(), 0);
}

// Cached and uncached generation must pick the same tokens: greedy, sampled with and without
// top-k, and across context-window refills (context 16 with 45 tokens in total).
TEST(Generate, CachedAndUncachedGiveTheSameTokens) {
    for (int kv : {2, 4}) {
        const ModelArgs a = small_args(kv);
        const int context = 16;
        Transformer model(a, 1, context);
        model.init_weights("agpt", 11);
        for (const auto& [temperature, top_k] :
             std::vector<std::pair<double, int>>{{0.0, 0}, {1.0, 0}, {0.8, 10}}) {
            for (int prompt_len : {5, 20}) {
                GenerateOptions o;
                o.max_new_tokens = 40;
                o.temperature = temperature;
                o.top_k = top_k;
                o.seed = 99;
                o.context = context;
                const std::vector<int32_t> prompt = random_ids(7, prompt_len, a.vocab_size);
                const GenerateResult cached = generate_tokens(model, prompt, o);
                o.use_cache = false;
                const GenerateResult plain = generate_tokens(model, prompt, o);
                SCOPED_TRACE(testing::Message() << "kv " << kv << " temperature " << temperature
                                                << " top_k " << top_k << " prompt " << prompt_len);
                ASSERT_EQ(cached.ids.size(), 40u);
                EXPECT_EQ(cached.ids, plain.ids);
                ASSERT_EQ(cached.logprobs.size(), plain.logprobs.size());
                for (std::size_t i = 0; i < cached.logprobs.size(); i++) {
                    EXPECT_NEAR(cached.logprobs[i], plain.logprobs[i], 1e-4) << "token " << i;
                    EXPECT_LE(cached.logprobs[i], 0.0);
                }
            }
        }
    }
}

TEST(Generate, GreedyIsArgmaxAndSeedsAreReproducible) {
    const ModelArgs a = small_args(2);
    Transformer model(a, 1, 32);
    model.init_weights("agpt", 2);
    const std::vector<int32_t> prompt = random_ids(1, 4, a.vocab_size);
    GenerateOptions o;
    o.max_new_tokens = 10;
    o.context = 32;
    o.temperature = 0.0;
    const GenerateResult g = generate_tokens(model, prompt, o);
    // The first greedy token is the argmax of the prompt's last logits.
    std::vector<float> logits(a.vocab_size);
    model.last_logits(prompt.data(), 4, logits.data());
    EXPECT_EQ(g.ids[0], std::max_element(logits.begin(), logits.end()) - logits.begin());
    o.seed = 5;
    EXPECT_EQ(generate_tokens(model, prompt, o).ids, g.ids);  // greedy ignores the seed

    o.temperature = 1.0;
    o.max_new_tokens = 30;
    const GenerateResult s1 = generate_tokens(model, prompt, o);
    EXPECT_EQ(generate_tokens(model, prompt, o).ids, s1.ids);
    o.seed = 6;
    EXPECT_NE(generate_tokens(model, prompt, o).ids, s1.ids);

    // top-k 1 is greedy whatever the temperature.
    o.top_k = 1;
    o.max_new_tokens = 10;
    EXPECT_EQ(generate_tokens(model, prompt, o).ids, g.ids);

    o.stop_id = g.ids[2];
    o.top_k = 1;
    EXPECT_LE(generate_tokens(model, prompt, o).ids.size(), 3u);
    EXPECT_THROW(generate_tokens(model, {}, o), Error);
    o.context = a.max_seq_len + 1;
    EXPECT_THROW(generate_tokens(model, prompt, o), Error);
}

TEST(Generate, SamplingFollowsTemperatureAndTopK) {
    const std::vector<float> logits = {1.0f, 3.0f, 2.0f, -1.0f};
    EXPECT_EQ(sample_from_logits(logits.data(), 4, 0.0, 0, 0.9), 1);
    // top-k 2 keeps ids 1 and 2 only: u near 0 picks the first kept id, near 1 the last.
    EXPECT_EQ(sample_from_logits(logits.data(), 4, 1.0, 2, 0.0), 1);
    EXPECT_EQ(sample_from_logits(logits.data(), 4, 1.0, 2, 0.999999), 2);
    // Without top-k, u near 0 picks id 0, u near 1 the last id.
    EXPECT_EQ(sample_from_logits(logits.data(), 4, 1.0, 0, 0.0), 0);
    EXPECT_EQ(sample_from_logits(logits.data(), 4, 1.0, 0, 0.9999999), 3);
}

}  // namespace
}  // namespace agpt
