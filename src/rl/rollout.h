#pragma once
// What SFT, GRPO and evaluation share: turning task examples into token rows, sampling
// completions with the key/value cache, held-out accuracy, and the seeds that keep training and
// held-out prompts apart.
//
// A row is [bos] prompt completion: the model reads the prompt after a beginning-of-sequence
// token and answers; a completion ends with the end-of-sequence token (the reference answer in
// SFT, a sampled one in GRPO unless it ran out of max_new_tokens).
#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/transformer.h"
#include "rl/task.h"

namespace agpt {

// Seed streams: training prompts (SFT and GRPO), sampling, and held-out prompts never share a
// seed, whatever the run seeds are.
enum class SeedStream : uint64_t { SftPrompt = 1, RlPrompt = 2, Sampling = 3, HeldOut = 4 };
uint64_t task_seed(uint64_t run_seed, SeedStream stream, uint64_t a, uint64_t b = 0);

// [bos] + prompt ids. Throws Error when the tokenizer has no bos/eos.
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& prompt);

// Rows of token ids, right-padded into (B, T) inputs and targets for teacher forcing: position
// t reads row[t] and is scored on row[t+1] only where t+1 falls in the completion.
struct PackedBatch {
    int B = 0, T = 0;
    std::vector<int32_t> inputs, targets;  // (B, T); targets -1 where not scored
};
// rows[i] = prompt_ids (with bos) followed by completion ids; completion_start[i] its index.
PackedBatch pack_rows(const std::vector<std::vector<int32_t>>& rows,
                      const std::vector<int>& completion_start, int pad_id);

// Samples a completion after prompt_ids with the cache: at most max_new_tokens ids, ending
// with eos_id when the model produced it. temperature 0: greedy.
std::vector<int32_t> sample_completion(Transformer& model, const std::vector<int32_t>& prompt_ids,
                                       int max_new_tokens, double temperature, int32_t eos_id,
                                       uint64_t seed);
// seeds.size() completions of one prompt: the prompt is run once and its cache copied for each
// completion, which then samples exactly as sample_completion with its seed.
std::vector<std::vector<int32_t>> sample_group(Transformer& model,
                                               const std::vector<int32_t>& prompt_ids,
                                               int max_new_tokens, double temperature,
                                               int32_t eos_id, const std::vector<uint64_t>& seeds);

struct TaskAccuracy {
    int n = 0, correct = 0;
    double accuracy() const { return n > 0 ? static_cast<double>(correct) / n : 0.0; }
    std::vector<std::string> examples;  // a few "prompt → completion (reward)" lines
};
// Greedy completions of n held-out prompts (seeds from SeedStream::HeldOut with eval_seed).
TaskAccuracy evaluate_task_accuracy(Transformer& model, const Tokenizer& tok, const RLTask& task,
                                    int difficulty, int n, uint64_t eval_seed, int max_new_tokens);

// Positions a prompt plus completion needs in the model (prompt + completion + bos).
int rl_sequence_capacity(const Transformer& model, int max_new_tokens);

}  // namespace agpt
