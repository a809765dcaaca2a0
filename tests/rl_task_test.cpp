// The RL task registry and each task's generator, extraction and reward, on hand-written cases
// including malformed, empty, enormous and adversarial answers.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/error.h"
#include "rl/task.h"

namespace agpt {
namespace {

TEST(RlTaskRegistry, BuiltinsAreRegisteredAndUnknownNamesSuggest) {
    std::set<std::string> names;
    for (const auto& t : registered_tasks()) names.insert(t->name());
    for (const char* n : {"sum_of_digits", "multiply", "word_sort", "countdown"})
        EXPECT_TRUE(names.count(n)) << n;
    EXPECT_EQ(get_task("multiply").name(), "multiply");
    try {
        get_task("sum_of_digit");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("did you mean 'sum_of_digits'"), std::string::npos)
            << e.what();
    }
    const std::string table = task_table();
    EXPECT_NE(table.find("countdown"), std::string::npos);
    EXPECT_EQ(std::count(table.begin(), table.end(), '\n'),
              static_cast<long>(registered_tasks().size()));
}

class EchoTask : public RLTask {
  public:
    std::string name() const override { return "rl_test_echo"; }
    std::string description() const override { return "repeat the prompt"; }
    int default_difficulty() const override { return 1; }
    int max_difficulty() const override { return 1; }
    TaskExample generate(uint64_t seed, int) const override {
        return {std::to_string(seed) + ">", std::to_string(seed), {}, 0};
    }
    std::optional<std::string> extract_answer(std::string_view c) const override {
        return first_line_trimmed(c, 20);
    }
    double reward(const TaskExample& ex, std::string_view c) const override {
        return extract_answer(c) == ex.answer ? 1.0 : 0.0;
    }
};

TEST(RlTaskRegistry, RegisterTaskAddsOneAndRefusesDuplicates) {
    register_task(std::make_shared<EchoTask>());
    EXPECT_EQ(get_task("rl_test_echo").reward(get_task("rl_test_echo").generate(7, 1), "7\n"), 1.0);
    EXPECT_THROW(register_task(std::make_shared<EchoTask>()), Error);
    EXPECT_THROW(check_difficulty(get_task("multiply"), 0, "rl.difficulty"), Error);
    EXPECT_THROW(check_difficulty(get_task("multiply"), 10, "rl.difficulty"), Error);
    EXPECT_NO_THROW(check_difficulty(get_task("multiply"), 9, "rl.difficulty"));
}

// The reference answer of every generated example earns reward 1, and generation is a function
// of (seed, difficulty).
TEST(RlTask, ReferenceAnswersScoreOneAndGenerationIsDeterministic) {
    for (const auto& t : registered_tasks()) {
        if (t->name() == "rl_test_echo") continue;
        for (int d = 1; d <= t->max_difficulty(); d++) {
            for (uint64_t seed = 0; seed < 50; seed++) {
                const TaskExample ex = t->generate(seed, d);
                EXPECT_EQ(t->reward(ex, ex.answer), 1.0) << t->name() << " " << ex.prompt;
                EXPECT_EQ(t->reward(ex, ex.answer + "\ntrailing junk"), 1.0) << t->name();
                EXPECT_EQ(t->reward(ex, ""), 0.0) << t->name();
                EXPECT_EQ(t->generate(seed, d).prompt, ex.prompt);
            }
        }
        EXPECT_NE(t->generate(1, t->default_difficulty()).prompt,
                  t->generate(2, t->default_difficulty()).prompt)
            << t->name();
    }
}

TEST(RlTask, SumOfDigits) {
    const RLTask& t = get_task("sum_of_digits");
    const TaskExample ex = t.generate(3, 5);
    ASSERT_EQ(ex.prompt.rfind("sum of digits ", 0), 0u);
    const std::string digits = ex.prompt.substr(14, 5);
    int sum = 0;
    for (char c : digits) sum += c - '0';
    EXPECT_EQ(ex.answer, std::to_string(sum));
    EXPECT_EQ(ex.prompt, "sum of digits " + digits + "=");
    EXPECT_EQ(t.reward(ex, "  " + ex.answer + "  "), 1.0);
    EXPECT_EQ(t.reward(ex, "0" + ex.answer), 0.0);  // leading zero: not canonical
    EXPECT_EQ(t.reward(ex, ex.answer + ".0"), 0.0);
    EXPECT_EQ(t.reward(ex, ex.answer + " " + ex.answer), 0.0);
    EXPECT_EQ(t.reward(ex, "\n" + ex.answer), 0.0);  // the answer must be on the first line
    EXPECT_EQ(t.reward(ex, std::string(100000, '9')), 0.0);
    EXPECT_EQ(t.reward(ex, std::string("1\0"
                                       "5",
                                       3)),
              0.0);
    EXPECT_EQ(t.extract_answer("-0"), std::nullopt);
    EXPECT_EQ(t.extract_answer("-12"), "-12");
    EXPECT_EQ(t.extract_answer("1e3"), std::nullopt);
}

TEST(RlTask, Multiply) {
    const RLTask& t = get_task("multiply");
    const TaskExample ex = t.generate(11, 3);
    ASSERT_EQ(ex.operands.size(), 2u);
    EXPECT_GE(ex.operands[0], 100);
    EXPECT_LT(ex.operands[1], 1000);
    EXPECT_EQ(ex.prompt,
              std::to_string(ex.operands[0]) + "*" + std::to_string(ex.operands[1]) + "=");
    EXPECT_EQ(ex.answer, std::to_string(ex.operands[0] * ex.operands[1]));
    EXPECT_EQ(t.reward(ex, std::to_string(ex.operands[0] * ex.operands[1] + 1)), 0.0);
    EXPECT_EQ(t.reward(ex, "-" + ex.answer), 0.0);
    EXPECT_EQ(t.reward(ex, ex.answer + "x"), 0.0);
    const TaskExample big = t.generate(5, 9);
    EXPECT_EQ(big.answer, std::to_string(big.operands[0] * big.operands[1]));
    EXPECT_EQ(t.reward(big, big.answer), 1.0);
    EXPECT_EQ(t.reward(ex, std::string(1 << 20, '1')), 0.0);
}

TEST(RlTask, WordSort) {
    const RLTask& t = get_task("word_sort");
    TaskExample ex;
    ex.prompt = "sort: pear apple fig=";
    ex.answer = "apple fig pear";
    EXPECT_EQ(t.reward(ex, "apple fig pear"), 1.0);
    EXPECT_EQ(t.reward(ex, " apple  fig pear \nmore"), 1.0);
    EXPECT_EQ(t.reward(ex, "apple pear fig"), 0.0);
    EXPECT_EQ(t.reward(ex, "apple fig"), 0.0);
    EXPECT_EQ(t.reward(ex, "apple fig pear pear"), 0.0);
    EXPECT_EQ(t.reward(ex, "Apple fig pear"), 0.0);
    EXPECT_EQ(t.reward(ex, "apple,fig,pear"), 0.0);
    EXPECT_EQ(t.reward(ex, "   "), 0.0);
    EXPECT_EQ(t.reward(ex, std::string(5000, 'a')), 0.0);
    const TaskExample g = t.generate(9, 6);
    EXPECT_EQ(std::count(g.answer.begin(), g.answer.end(), ' '), 5);
}

TEST(RlTask, CountdownEvaluatorIsExactAndSafe) {
    const std::vector<long> nums = {3, 7, 25, 50};
    auto value = [&](std::string_view e) {
        const CountdownEval r = evaluate_countdown(e, nums);
        EXPECT_TRUE(r.ok) << e << ": " << r.why;
        return std::pair{r.numerator, r.denominator};
    };
    EXPECT_EQ(value("50+25-7+3"), (std::pair{71L, 1L}));
    EXPECT_EQ(value("50 - 25 * 3"), (std::pair{-25L, 1L}));  // precedence
    EXPECT_EQ(value("(50-25)*3"), (std::pair{75L, 1L}));
    EXPECT_EQ(value("50-25-7"), (std::pair{18L, 1L}));                   // left associative
    EXPECT_EQ(value("50/25/7"), (std::pair{2L, 7L}));                    // exact rationals
    const CountdownEval exact = evaluate_countdown("7/3*3", {3, 3, 7});  // no float rounding
    EXPECT_TRUE(exact.ok && exact.numerator == 7 && exact.denominator == 1) << exact.why;
    auto why = [&](std::string_view e, const std::vector<long>& allowed) {
        const CountdownEval r = evaluate_countdown(e, allowed);
        EXPECT_FALSE(r.ok) << e;
        return r.why;
    };
    EXPECT_EQ(why("7/(3-3)", {3, 3, 7}), "division by zero");
    EXPECT_EQ(why("50/(25-25)", nums), "division by zero");
    EXPECT_EQ(why("3+3", nums), "number 3 used more often than given");
    EXPECT_EQ(why("50+4", nums), "number 4 is not given");
    EXPECT_EQ(why("", nums), "expression ends early");
    EXPECT_EQ(why("3+", nums), "expression ends early");
    EXPECT_EQ(why("(3+7", nums), "missing ')'");
    EXPECT_EQ(why("3+7)", nums), "unexpected character after the expression");
    EXPECT_EQ(why("-3+7", nums), "expected a number or '('");
    EXPECT_EQ(why("3**7", nums), "expected a number or '('");
    EXPECT_EQ(why("3^7", nums), "unexpected character after the expression");
    EXPECT_EQ(why("__import__('os')", nums), "expected a number or '('");
    EXPECT_EQ(why(std::string(40, '9'), nums), "number too long");
    EXPECT_EQ(why(std::string(257, ' '), nums), "expression longer than 256 characters");
    // Deep nesting stops at a fixed depth instead of recursing without bound.
    std::string deep = std::string(33, '(') + "3" + std::string(33, ')');
    EXPECT_EQ(why(deep, nums), "parentheses nested too deeply");
    std::string ok_deep = std::string(32, '(') + "3" + std::string(32, ')');
    EXPECT_TRUE(evaluate_countdown(ok_deep, nums).ok);
    // Values that would overflow 64 bits are refused, not wrapped.
    const std::vector<long> big = {999999, 999999, 999999, 999999};
    EXPECT_EQ(why("999999*999999*999999", big), "a value exceeds 10^15");
    EXPECT_TRUE(evaluate_countdown("999999*999999", big).ok);
}

TEST(RlTask, CountdownReward) {
    const RLTask& t = get_task("countdown");
    TaskExample ex;
    ex.prompt = "reach 71 with 3 7 25 50:";
    ex.operands = {3, 7, 25, 50};
    ex.target = 71;
    ex.answer = "50+25-7+3";
    EXPECT_EQ(t.reward(ex, "50+25-7+3"), 1.0);
    EXPECT_EQ(t.reward(ex, " 3 + 50 + 25 - 7 \n"), 1.0);  // another order, same value
    EXPECT_EQ(t.reward(ex, "50+25-7+3+0"), 0.0);          // 0 is not given
    EXPECT_EQ(t.reward(ex, "50+25-7"), 0.0);              // wrong value
    EXPECT_EQ(t.reward(ex, "71"), 0.0);                   // 71 is not given
    EXPECT_EQ(t.reward(ex, "50+25-7+3=71"), 0.0);
    EXPECT_EQ(t.reward(ex, "(50*3-7)/2"), 0.0);  // 2 not given
    EXPECT_EQ(t.reward(ex, "142/2"), 0.0);
    EXPECT_EQ(t.reward(ex, std::string(1 << 20, '(')), 0.0);
    // A non-integer value equal to the target when truncated is not the target.
    TaskExample frac = ex;
    frac.target = 2;
    EXPECT_EQ(t.reward(frac, "50/25"), 1.0);
    EXPECT_EQ(t.reward(frac, "50/(25-7+3)"), 0.0);  // 50/21
    // Generated problems: numbers sorted in the prompt, target reachable, within range.
    for (uint64_t s = 0; s < 200; s++) {
        const TaskExample g = t.generate(s, 4);
        EXPECT_EQ(g.operands.size(), 4u);
        EXPECT_TRUE(std::is_sorted(g.operands.begin(), g.operands.end()));
        EXPECT_GE(g.target, 1);
        EXPECT_LE(g.target, 999);
        const CountdownEval e = evaluate_countdown(g.answer, g.operands);
        ASSERT_TRUE(e.ok) << g.answer << ": " << e.why;
        EXPECT_EQ(e.numerator, g.target);
    }
}

}  // namespace
}  // namespace agpt
