#include "tools/generate.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>

#include "core/error.h"
#include "core/rng.h"
#include "model/kv_cache.h"
#include "model/transformer.h"

namespace agpt {

int32_t sample_from_logits(const float* logits, int V, double temperature, int top_k,
                           double uniform01) {
    if (temperature <= 0.0)
        return static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
    float cutoff = -INFINITY;
    if (top_k > 0 && top_k < V) {
        std::vector<float> sorted(logits, logits + V);
        std::nth_element(sorted.begin(), sorted.begin() + (top_k - 1), sorted.end(),
                         std::greater<>());
        cutoff = sorted[top_k - 1];
    }
    const double maxv = *std::max_element(logits, logits + V);
    std::vector<double> prob(V);
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        prob[v] = logits[v] < cutoff ? 0.0 : std::exp((logits[v] - maxv) / temperature);
        sum += prob[v];
    }
    double u = uniform01 * sum;
    int32_t last_nonzero = 0;
    for (int v = 0; v < V; v++) {
        if (prob[v] == 0.0) continue;
        last_nonzero = v;
        u -= prob[v];
        if (u < 0.0) return v;
    }
    return last_nonzero;  // u·sum rounded up to sum
}

namespace {

double log_softmax_at(const float* logits, int V, int id) {
    const double maxv = *std::max_element(logits, logits + V);
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += std::exp(static_cast<double>(logits[v]) - maxv);
    return static_cast<double>(logits[id]) - maxv - std::log(sum);
}

}  // namespace

GenerateResult generate_tokens(Transformer& model, const std::vector<int32_t>& prompt,
                               const GenerateOptions& o) {
    if (prompt.empty()) fail("generate: the prompt is empty");
    if (o.max_new_tokens < 0) fail("generate: max_new_tokens {} is negative", o.max_new_tokens);
    if (o.top_k < 0) fail("generate: top_k {} is negative", o.top_k);
    if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature))
        fail("generate: temperature {} must be >= 0", o.temperature);
    const ModelArgs& a = model.args();
    const int V = a.vocab_size;
    const int W = o.context > 0 ? o.context : a.max_seq_len;
    if (W > a.max_seq_len)
        fail("generate: context {} exceeds the model's max_seq_len {}", W, a.max_seq_len);
    for (int32_t id : prompt)
        if (id < 0 || id >= V)
            fail("generate: prompt id {} is outside the vocabulary [0, {})", id, V);

    std::vector<int32_t> seq = prompt;
    // The context is seq[start, seq.size()).
    std::size_t start = seq.size() > static_cast<std::size_t>(W) ? seq.size() - W : 0;
    std::unique_ptr<KvCache> cache;
    // MLA has no cached decoding path yet: it recomputes the window (Transformer::last_logits).
    if (o.use_cache && !model.args().mla) cache = std::make_unique<KvCache>(model, W);
    std::vector<float> logits(V);
    Rng rng(o.seed);
    GenerateResult r;
    for (int i = 0; i < o.max_new_tokens; i++) {
        bool refill = i == 0;
        if (seq.size() - start > static_cast<std::size_t>(W)) {
            start = seq.size() - std::max(1, W / 2);
            refill = true;
        }
        const int T = static_cast<int>(seq.size() - start);
        if (!cache) {
            model.last_logits(seq.data() + start, T, logits.data());
        } else if (refill) {
            cache->clear();
            cache->append(seq.data() + start, T, logits.data());
        } else {
            cache->append(&seq.back(), 1, logits.data());
        }
        // Greedy decoding draws nothing, so a greedy and a sampled run share no state.
        const double u = o.temperature > 0.0 ? rng.uniform() : 0.0;
        const int32_t next = sample_from_logits(logits.data(), V, o.temperature, o.top_k, u);
        r.ids.push_back(next);
        r.logprobs.push_back(log_softmax_at(logits.data(), V, next));
        seq.push_back(next);
        if (next == o.stop_id) break;
    }
    return r;
}

}  // namespace agpt
