#pragma once
// Text generation from a trained model: a key/value cache (model/kv_cache.h) makes N new
// tokens cost one prefill and N single-token steps. The uncached path recomputes the whole
// context window each step through Transformer::last_logits; it exists as the reference the
// cached path is tested against.
//
// Context window: at most `context` tokens are attended. When the sequence outgrows it, the
// oldest tokens are dropped so that the newest context/2 remain, and the cache is refilled
// from them: amortised, one refill token per generated token, so generation stays O(N). Both
// paths follow the same rule, so they see the same context at every step.
//
// Intended use:
//   RunModel rm = load_run_model(run, -1, 1, 1);
//   GenerateOptions o; o.max_new_tokens = 100; o.temperature = 0; o.context = 512;
//   GenerateResult r = generate_tokens(*rm.model, rm.tokenizer.encode("Once"), o);
#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace agpt {

struct GenerateOptions {
    int max_new_tokens = 200;
    double temperature = 0.8;  // 0: greedy (argmax; ties to the lowest id)
    int top_k = 0;             // 0: the whole vocabulary
    uint64_t seed = 0;
    int context = 0;  // tokens attended; 0: the model's max_seq_len
    // Without the cache the model must have been allocated for (1, context) rows.
    bool use_cache = true;
    int stop_id = -1;  // stop after generating this id (e.g. end-of-sequence); -1: never
};

struct GenerateResult {
    std::vector<int32_t> ids;  // the generated ids (prompt not included)
    // log p(id) of each generated id under the model: the log-softmax of its logits, without
    // temperature or top-k.
    std::vector<double> logprobs;
};

// Generates after `prompt` (non-empty; a longer prompt than `context` keeps its last `context`
// tokens as the first context). Sampling draws one uniform number per token from Rng(seed).
GenerateResult generate_tokens(Transformer& model, const std::vector<int32_t>& prompt,
                               const GenerateOptions& options);

// The sampling step on its own: picks an id from logits (V) and returns it.
int32_t sample_from_logits(const float* logits, int V, double temperature, int top_k,
                           double uniform01);

}  // namespace agpt
