#pragma once
// Tasks for RL fine-tuning (GRPO, rl/grpo.h) and supervised warm-up (rl/sft.h): each generates
// prompts from a seed and a difficulty, knows the reference answer, extracts an answer from a
// model's completion and scores it. Model output is untrusted text: extraction and rewards
// accept any bytes, bound their work by the input's length, and never throw on it.
//
// A task is one file (rl/task_*.cpp) defining an RLTask and its make_*_task(); the built-in
// list in task.cpp registers it under its name. Programs and tests can add their own with
// register_task().
//
// Intended use:
//   const RLTask& task = get_task("sum_of_digits");
//   TaskExample ex = task.generate(seed, task.default_difficulty());
//   double r = task.reward(ex, completion_text);      // in [0, 1]; 1 means correct
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agpt {

struct TaskExample {
    std::string prompt;          // what the model continues
    std::string answer;          // one reference completion (without the end-of-sequence)
    std::vector<long> operands;  // the problem's numbers (task-specific)
    long target = 0;             // the value to reach, where the task has one
};

class RLTask {
  public:
    virtual ~RLTask() = default;
    virtual std::string name() const = 0;
    virtual std::string description() const = 0;
    virtual int default_difficulty() const = 0;
    virtual int max_difficulty() const = 0;
    // Deterministic in (seed, difficulty); difficulty in [1, max_difficulty()].
    virtual TaskExample generate(uint64_t seed, int difficulty) const = 0;
    // The answer a completion gives (its first line, trimmed and checked for the task's format),
    // or nullopt when it gives none in that format.
    virtual std::optional<std::string> extract_answer(std::string_view completion) const = 0;
    // 1 for a correct answer, 0 otherwise.
    virtual double reward(const TaskExample& example, std::string_view completion) const = 0;
};

// A task whose answer is one integer (up to 18 digits, no sign or leading zeros) on the first
// line of the completion, scored by exact match: sum_of_digits, multiply.
class IntegerAnswerTask : public RLTask {
  public:
    std::optional<std::string> extract_answer(std::string_view completion) const override;
    double reward(const TaskExample& example, std::string_view completion) const override;
};

using RLTaskPtr = std::shared_ptr<const RLTask>;

// Adds a task under task->name(); throws Error when the name is taken or empty.
void register_task(RLTaskPtr task);
// Throws Error naming the unknown task and listing the known ones (with a did-you-mean).
const RLTask& get_task(std::string_view name);
// Registered tasks in name order.
std::vector<RLTaskPtr> registered_tasks();
// What `agpt rl tasks` prints: one line per task, its name, default difficulty and description.
std::string task_table();
// Checks difficulty against the task's range; throws Error naming `key`.
void check_difficulty(const RLTask& task, int difficulty, std::string_view key);

// Built-in tasks (one file each).
RLTaskPtr make_sum_of_digits_task();
RLTaskPtr make_multiply_task();
RLTaskPtr make_word_sort_task();
RLTaskPtr make_countdown_task();

// The first line of a completion with surrounding spaces and tabs removed, or nullopt when that
// line is longer than max_len (an answer that long is not an answer).
std::optional<std::string> first_line_trimmed(std::string_view completion, std::size_t max_len);
// A canonical decimal integer: optional '-', digits, no leading zeros (except "0"), at most
// max_digits digits.
bool is_canonical_integer(std::string_view s, std::size_t max_digits);

// Countdown's expression checker, exposed for tests: evaluates `expr` (integers, + - * /,
// parentheses, spaces) exactly over the rationals. Fails (nullopt, with `why` set) on syntax
// errors, division by zero, an intermediate value beyond ±10^15, nesting deeper than 32, more
// than 256 characters, or when the literals used are not a sub-multiset of `allowed`.
struct CountdownEval {
    bool ok = false;
    long numerator = 0, denominator = 1;
    std::string why;  // the failure, when !ok
};
CountdownEval evaluate_countdown(std::string_view expr, const std::vector<long>& allowed);

}  // namespace agpt
