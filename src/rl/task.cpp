#include "rl/task.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "core/error.h"

namespace agpt {

namespace {

struct Registry {
    std::mutex mutex;
    std::map<std::string, RLTaskPtr, std::less<>> tasks;
};

Registry& registry() {
    static Registry* r = [] {
        auto* reg = new Registry;
        for (RLTaskPtr t : {make_sum_of_digits_task(), make_multiply_task(), make_word_sort_task(),
                            make_countdown_task()})
            reg->tasks.emplace(t->name(), std::move(t));
        return reg;
    }();
    return *r;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); j++) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); i++) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); j++)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

}  // namespace

void register_task(RLTaskPtr task) {
    if (!task) fail("rl: register_task got no task");
    const std::string name = task->name();
    if (name.empty()) fail("rl: a task's name must not be empty");
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    if (r.tasks.count(name)) fail("rl: a task named '{}' is already registered", name);
    r.tasks.emplace(name, std::move(task));
}

const RLTask& get_task(std::string_view name) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    if (auto it = r.tasks.find(name); it != r.tasks.end()) return *it->second;
    std::string known, best;
    std::size_t best_d = 3;
    for (const auto& [n, t] : r.tasks) {
        known += (known.empty() ? "" : ", ") + n;
        if (const std::size_t d = edit_distance(name, n); d < best_d) best_d = d, best = n;
    }
    fail("rl: unknown task '{}'{}; known: {}", name,
         best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best), known);
}

std::vector<RLTaskPtr> registered_tasks() {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    std::vector<RLTaskPtr> out;
    for (const auto& [n, t] : r.tasks) out.push_back(t);
    return out;
}

std::string task_table() {
    std::string out;
    for (const RLTaskPtr& t : registered_tasks())
        out += fmt::format("{:<16} difficulty {:>2} {:<7} {}\n", t->name(), t->default_difficulty(),
                           fmt::format("(1-{})", t->max_difficulty()), t->description());
    return out;
}

void check_difficulty(const RLTask& task, int difficulty, std::string_view key) {
    if (difficulty < 1 || difficulty > task.max_difficulty())
        fail("{} = {}: task {} takes a difficulty in [1, {}]", key, difficulty, task.name(),
             task.max_difficulty());
}

std::optional<std::string> first_line_trimmed(std::string_view completion, std::size_t max_len) {
    const std::size_t nl = completion.find('\n');
    std::string_view line = completion.substr(0, nl);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r'))
        line.remove_suffix(1);
    if (line.size() > max_len) return std::nullopt;
    return std::string(line);
}

bool is_canonical_integer(std::string_view s, std::size_t max_digits) {
    const bool negative = !s.empty() && s.front() == '-';
    if (negative) s.remove_prefix(1);
    if (negative && s == "0") return false;
    if (s.empty() || s.size() > max_digits) return false;
    if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
    return s.size() == 1 || s.front() != '0';
}

std::optional<std::string> IntegerAnswerTask::extract_answer(std::string_view completion) const {
    auto line = first_line_trimmed(completion, 32);
    if (!line || !is_canonical_integer(*line, 18)) return std::nullopt;
    return line;
}

double IntegerAnswerTask::reward(const TaskExample& example, std::string_view completion) const {
    const auto a = extract_answer(completion);
    return a && *a == example.answer ? 1.0 : 0.0;
}

}  // namespace agpt
