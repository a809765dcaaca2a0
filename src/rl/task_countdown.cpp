// countdown: "reach 71 with 3 7 25 50:" -> "50+25-7+3". Reach the target with + - * / over the
// given numbers, each at most once. Difficulty: how many numbers are given.
#include <algorithm>
#include <cstdlib>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/rng.h"
#include "rl/task.h"

namespace agpt {

namespace {

constexpr std::size_t kMaxExprChars = 256;
constexpr int kMaxDepth = 32;
constexpr __int128 kMaxMagnitude = 1'000'000'000'000'000;  // 10^15
constexpr std::size_t kMaxLiteralDigits = 15;

struct Rational {
    __int128 num = 0, den = 1;  // den > 0, reduced
};

__int128 gcd128(__int128 a, __int128 b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b != 0) {
        const __int128 t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// Recursive descent over untrusted text:
//   expr   := term (('+' | '-') term)*
//   term   := factor (('*' | '/') factor)*
//   factor := integer | '(' expr ')'
// Every intermediate numerator and denominator stays within ±10^15, so products of two fit in
// __int128 and nothing overflows.
class Parser {
  public:
    explicit Parser(std::string_view s) : s_(s) {}
    bool parse(Rational& out) {
        if (!expr(out, 0)) return false;
        skip_spaces();
        if (pos_ != s_.size()) return error("unexpected character after the expression");
        return true;
    }
    const std::string& why() const { return why_; }
    const std::vector<long>& literals() const { return literals_; }

  private:
    std::string_view s_;
    std::size_t pos_ = 0;
    std::string why_;
    std::vector<long> literals_;

    bool error(std::string msg) {
        if (why_.empty()) why_ = std::move(msg);
        return false;
    }
    void skip_spaces() {
        while (pos_ < s_.size() && s_[pos_] == ' ') pos_++;
    }
    bool normalise(Rational& r) {
        const __int128 g = gcd128(r.num, r.den);
        if (g > 1) r.num /= g, r.den /= g;
        if (r.den < 0) r.num = -r.num, r.den = -r.den;
        if (r.num > kMaxMagnitude || r.num < -kMaxMagnitude || r.den > kMaxMagnitude)
            return error("a value exceeds 10^15");
        return true;
    }
    bool apply(Rational& a, char op, const Rational& b) {
        Rational r;
        switch (op) {
            case '+':
                r = {a.num * b.den + b.num * a.den, a.den * b.den};
                break;
            case '-':
                r = {a.num * b.den - b.num * a.den, a.den * b.den};
                break;
            case '*':
                r = {a.num * b.num, a.den * b.den};
                break;
            default:
                if (b.num == 0) return error("division by zero");
                r = {a.num * b.den, a.den * b.num};
        }
        if (!normalise(r)) return false;
        a = r;
        return true;
    }
    bool expr(Rational& out, int depth) {
        if (!term(out, depth)) return false;
        for (;;) {
            skip_spaces();
            if (pos_ >= s_.size() || (s_[pos_] != '+' && s_[pos_] != '-')) return true;
            const char op = s_[pos_++];
            Rational rhs;
            if (!term(rhs, depth) || !apply(out, op, rhs)) return false;
        }
    }
    bool term(Rational& out, int depth) {
        if (!factor(out, depth)) return false;
        for (;;) {
            skip_spaces();
            if (pos_ >= s_.size() || (s_[pos_] != '*' && s_[pos_] != '/')) return true;
            const char op = s_[pos_++];
            Rational rhs;
            if (!factor(rhs, depth) || !apply(out, op, rhs)) return false;
        }
    }
    bool factor(Rational& out, int depth) {
        skip_spaces();
        if (pos_ >= s_.size()) return error("expression ends early");
        if (s_[pos_] == '(') {
            if (depth + 1 > kMaxDepth) return error("parentheses nested too deeply");
            pos_++;
            if (!expr(out, depth + 1)) return false;
            skip_spaces();
            if (pos_ >= s_.size() || s_[pos_] != ')') return error("missing ')'");
            pos_++;
            return true;
        }
        const std::size_t start = pos_;
        while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') pos_++;
        if (pos_ == start) return error("expected a number or '('");
        if (pos_ - start > kMaxLiteralDigits) return error("number too long");
        long v = 0;
        for (std::size_t i = start; i < pos_; i++) v = v * 10 + (s_[i] - '0');
        literals_.push_back(v);
        out = {v, 1};
        return true;
    }
};

// A random expression over all of `nums` whose every step is an integer >= 0.
bool build_expression(Rng& rng, std::vector<long> nums, std::string& text, long& value) {
    std::vector<std::string> texts;
    for (long n : nums) texts.push_back(std::to_string(n));
    while (nums.size() > 1) {
        const std::size_t i = rng.below(nums.size());
        std::size_t j = rng.below(nums.size() - 1);
        if (j >= i) j++;
        const long a = nums[i], b = nums[j];
        const int op = static_cast<int>(rng.below(4));
        long r = 0;
        char c = '+';
        if (op == 0) r = a + b, c = '+';
        if (op == 1) {
            if (a < b) return false;
            r = a - b, c = '-';
        }
        if (op == 2) r = a * b, c = '*';
        if (op == 3) {
            if (b == 0 || a % b != 0) return false;
            r = a / b, c = '/';
        }
        // Parenthesise every operand that is itself an expression: simple and always right.
        auto wrap = [](const std::string& t) {
            return t.find_first_of("+-*/") == std::string::npos ? t : "(" + t + ")";
        };
        const std::string t = wrap(texts[i]) + c + wrap(texts[j]);
        const std::size_t hi = std::max(i, j), lo = std::min(i, j);
        nums.erase(nums.begin() + static_cast<long>(hi));
        texts.erase(texts.begin() + static_cast<long>(hi));
        nums[lo] = r;
        texts[lo] = t;
    }
    text = texts[0];
    value = nums[0];
    return true;
}

class CountdownTask : public RLTask {
  public:
    std::string name() const override { return "countdown"; }
    std::string description() const override {
        return "reach a target with + - * / over given numbers, each at most once; difficulty: how "
               "many (>= 2)";
    }
    int default_difficulty() const override { return 3; }
    int max_difficulty() const override { return 6; }
    TaskExample generate(uint64_t seed, int difficulty) const override {
        Rng rng(seed);
        const int n = std::max(difficulty, 2);
        for (;;) {
            std::vector<long> nums;
            for (int i = 0; i < n; i++) nums.push_back(1 + static_cast<long>(rng.below(20)));
            std::string text;
            long value = 0;
            if (!build_expression(rng, nums, text, value) || value < 1 || value > 999) continue;
            std::sort(nums.begin(), nums.end());
            TaskExample ex;
            ex.prompt = fmt::format("reach {} with {}:", value, fmt::join(nums, " "));
            ex.answer = text;
            ex.operands = nums;
            ex.target = value;
            return ex;
        }
    }
    std::optional<std::string> extract_answer(std::string_view completion) const override {
        auto line = first_line_trimmed(completion, kMaxExprChars);
        if (!line || line->empty()) return std::nullopt;
        return line;
    }
    double reward(const TaskExample& ex, std::string_view completion) const override {
        const auto a = extract_answer(completion);
        if (!a) return 0.0;
        const CountdownEval e = evaluate_countdown(*a, ex.operands);
        return e.ok && e.denominator == 1 && e.numerator == ex.target ? 1.0 : 0.0;
    }
};

}  // namespace

CountdownEval evaluate_countdown(std::string_view expr, const std::vector<long>& allowed) {
    CountdownEval out;
    if (expr.size() > kMaxExprChars) {
        out.why = "expression longer than 256 characters";
        return out;
    }
    Parser p(expr);
    Rational r;
    if (!p.parse(r)) {
        out.why = p.why();
        return out;
    }
    std::vector<long> pool = allowed;
    for (long lit : p.literals()) {
        const auto it = std::find(pool.begin(), pool.end(), lit);
        if (it == pool.end()) {
            const bool given = std::find(allowed.begin(), allowed.end(), lit) != allowed.end();
            out.why = given ? fmt::format("number {} used more often than given", lit)
                            : fmt::format("number {} is not given", lit);
            return out;
        }
        pool.erase(it);
    }
    out.ok = true;
    out.numerator = static_cast<long>(r.num);
    out.denominator = static_cast<long>(r.den);
    return out;
}

RLTaskPtr make_countdown_task() {
    return std::make_shared<CountdownTask>();
}

}  // namespace agpt
