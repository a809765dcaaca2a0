// word_sort: "sort: pear apple fig=" -> "apple fig pear". Difficulty: the number of words.
#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/rng.h"
#include "rl/task.h"

namespace agpt {

namespace {

constexpr std::array<const char*, 48> kWords = {
    "apple", "bird",  "cat",  "dog",  "egg",   "fig",  "goat",  "hat",   "ice",  "jam",
    "kite",  "lamp",  "moon", "nut",  "owl",   "pear", "queen", "rose",  "sun",  "tree",
    "umbra", "vase",  "wolf", "yak",  "zebra", "arch", "bell",  "cloud", "drum", "elm",
    "fern",  "gold",  "hill", "ink",  "jade",  "kelp", "lime",  "mint",  "nest", "oak",
    "pine",  "quail", "reed", "salt", "tide",  "urn",  "vine",  "wren"};

std::vector<std::string> split_words(std::string_view s) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && s[i] == ' ') i++;
        const std::size_t start = i;
        while (i < s.size() && s[i] != ' ') i++;
        if (i > start) out.emplace_back(s.substr(start, i - start));
    }
    return out;
}

class WordSortTask : public RLTask {
  public:
    std::string name() const override { return "word_sort"; }
    std::string description() const override {
        return "sort distinct words alphabetically; difficulty: how many (>= 2)";
    }
    int default_difficulty() const override { return 4; }
    int max_difficulty() const override { return 12; }
    TaskExample generate(uint64_t seed, int difficulty) const override {
        Rng rng(seed);
        const int n = std::max(difficulty, 2);
        std::vector<std::string> pool(kWords.begin(), kWords.end());
        std::vector<std::string> words;
        for (int i = 0; i < n; i++) {  // partial Fisher–Yates: n distinct words
            const std::size_t j = i + rng.below(pool.size() - i);
            std::swap(pool[i], pool[j]);
            words.push_back(pool[i]);
        }
        TaskExample ex;
        ex.prompt = fmt::format("sort: {}=", fmt::join(words, " "));
        std::sort(words.begin(), words.end());
        ex.answer = fmt::format("{}", fmt::join(words, " "));
        return ex;
    }
    std::optional<std::string> extract_answer(std::string_view completion) const override {
        auto line = first_line_trimmed(completion, 256);
        if (!line || line->empty()) return std::nullopt;
        if (!std::all_of(line->begin(), line->end(),
                         [](char c) { return (c >= 'a' && c <= 'z') || c == ' '; }))
            return std::nullopt;
        // Runs of spaces count as one separator.
        return fmt::format("{}", fmt::join(split_words(*line), " "));
    }
    double reward(const TaskExample& ex, std::string_view completion) const override {
        const auto a = extract_answer(completion);
        return a && *a == ex.answer ? 1.0 : 0.0;
    }
};

}  // namespace

RLTaskPtr make_word_sort_task() {
    return std::make_shared<WordSortTask>();
}

}  // namespace agpt
