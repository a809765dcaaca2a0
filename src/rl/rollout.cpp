#include "rl/rollout.h"

#include <algorithm>

#include "core/error.h"
#include "core/rng.h"
#include "model/kv_cache.h"
#include "tools/generate.h"

namespace agpt {

namespace {

uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

}  // namespace

uint64_t task_seed(uint64_t run_seed, SeedStream stream, uint64_t a, uint64_t b) {
    uint64_t h = splitmix(run_seed);
    h = splitmix(h ^ static_cast<uint64_t>(stream));
    h = splitmix(h ^ a);
    return splitmix(h ^ b);
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& prompt) {
    if (!tok.bos_id() || !tok.eos_id())
        fail("rl: the tokenizer has no <|bos|>/<|eos|> tokens; tasks need both (use 'byte')");
    std::vector<int32_t> ids{*tok.bos_id()};
    const auto body = tok.encode(prompt);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

PackedBatch pack_rows(const std::vector<std::vector<int32_t>>& rows,
                      const std::vector<int>& completion_start, int pad_id) {
    PackedBatch p;
    p.B = static_cast<int>(rows.size());
    for (const auto& r : rows) p.T = std::max(p.T, static_cast<int>(r.size()) - 1);
    p.inputs.assign(static_cast<std::size_t>(p.B) * p.T, pad_id);
    p.targets.assign(p.inputs.size(), -1);
    for (int b = 0; b < p.B; b++) {
        const auto& r = rows[b];
        for (int t = 0; t + 1 < static_cast<int>(r.size()); t++) {
            p.inputs[static_cast<std::size_t>(b) * p.T + t] = r[t];
            if (t + 1 >= completion_start[b])
                p.targets[static_cast<std::size_t>(b) * p.T + t] = r[t + 1];
        }
    }
    return p;
}

namespace {

std::vector<int32_t> continue_sampling(KvCache& cache, std::vector<float>& logits, int V,
                                       int max_new_tokens, double temperature, int32_t eos_id,
                                       uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> out;
    for (int i = 0; i < max_new_tokens; i++) {
        const double u = temperature > 0 ? rng.uniform() : 0.0;
        const int32_t next = sample_from_logits(logits.data(), V, temperature, 0, u);
        out.push_back(next);
        if (next == eos_id || i + 1 == max_new_tokens) break;
        cache.append(&next, 1, logits.data());
    }
    return out;
}

KvCache prefill(Transformer& model, const std::vector<int32_t>& prompt_ids, int max_new_tokens,
                std::vector<float>& logits) {
    const int capacity = static_cast<int>(prompt_ids.size()) + max_new_tokens;
    if (capacity > model.args().max_seq_len)
        fail("rl: prompt ({} tokens) plus max_new_tokens {} exceed the model's context {}",
             prompt_ids.size(), max_new_tokens, model.args().max_seq_len);
    KvCache cache(model, capacity);
    logits.resize(model.args().vocab_size);
    cache.append(prompt_ids.data(), static_cast<int>(prompt_ids.size()), logits.data());
    return cache;
}

}  // namespace

std::vector<int32_t> sample_completion(Transformer& model, const std::vector<int32_t>& prompt_ids,
                                       int max_new_tokens, double temperature, int32_t eos_id,
                                       uint64_t seed) {
    std::vector<float> logits;
    KvCache cache = prefill(model, prompt_ids, max_new_tokens, logits);
    return continue_sampling(cache, logits, model.args().vocab_size, max_new_tokens, temperature,
                             eos_id, seed);
}

std::vector<std::vector<int32_t>> sample_group(Transformer& model,
                                               const std::vector<int32_t>& prompt_ids,
                                               int max_new_tokens, double temperature,
                                               int32_t eos_id, const std::vector<uint64_t>& seeds) {
    std::vector<float> prompt_logits;
    const KvCache prompt_cache = prefill(model, prompt_ids, max_new_tokens, prompt_logits);
    std::vector<std::vector<int32_t>> out;
    for (const uint64_t seed : seeds) {
        KvCache cache = prompt_cache;
        std::vector<float> logits = prompt_logits;
        out.push_back(continue_sampling(cache, logits, model.args().vocab_size, max_new_tokens,
                                        temperature, eos_id, seed));
    }
    return out;
}

TaskAccuracy evaluate_task_accuracy(Transformer& model, const Tokenizer& tok, const RLTask& task,
                                    int difficulty, int n, uint64_t eval_seed, int max_new_tokens) {
    TaskAccuracy acc;
    const int32_t eos = *tok.eos_id();
    for (int i = 0; i < n; i++) {
        const TaskExample ex = task.generate(
            task_seed(eval_seed, SeedStream::HeldOut, static_cast<uint64_t>(i)), difficulty);
        const auto ids =
            sample_completion(model, encode_prompt(tok, ex.prompt), max_new_tokens, 0.0, eos, 0);
        const std::string text = tok.decode(ids);
        const double r = task.reward(ex, text);
        acc.n++;
        if (r == 1.0) acc.correct++;
        if (acc.examples.size() < 5)
            acc.examples.push_back(fmt::format("{}{} (reward {})", ex.prompt, text, r));
    }
    return acc;
}

int rl_sequence_capacity(const Transformer& model, int max_new_tokens) {
    return std::min(model.args().max_seq_len, 1 + 128 + max_new_tokens);
}

}  // namespace agpt
