#pragma once
#include <cstdint>
#include <vector>

#include "model/language_model.h"

namespace agpt {

struct SampleOptions {
    int max_new_tokens = 200;
    double temperature = 0.8;  // 0: greedy
    int top_k = 0;             // 0: whole vocabulary
    uint64_t seed = 0;
};

// Samples continuation ids after `prompt` (non-empty). The context is the last max_seq tokens;
// each new token costs one forward over that window.
std::vector<int32_t> sample_tokens(LanguageModel& model, int max_seq,
                                   const std::vector<int32_t>& prompt, const SampleOptions& opt);

}  // namespace agpt
