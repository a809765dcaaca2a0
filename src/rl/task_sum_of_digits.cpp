// sum_of_digits: "sum of digits 4821=" -> "15". Difficulty: the number of digits.
#include "core/rng.h"
#include "rl/task.h"

namespace agpt {

namespace {

class SumOfDigitsTask : public IntegerAnswerTask {
  public:
    std::string name() const override { return "sum_of_digits"; }
    std::string description() const override {
        return "add the decimal digits of a number; difficulty: its digits";
    }
    int default_difficulty() const override { return 4; }
    int max_difficulty() const override { return 18; }
    TaskExample generate(uint64_t seed, int difficulty) const override {
        Rng rng(seed);
        std::string digits;
        long sum = 0;
        for (int i = 0; i < difficulty; i++) {
            const int d =
                i == 0 ? 1 + static_cast<int>(rng.below(9)) : static_cast<int>(rng.below(10));
            digits += static_cast<char>('0' + d);
            sum += d;
        }
        TaskExample ex;
        ex.prompt = "sum of digits " + digits + "=";
        ex.answer = std::to_string(sum);
        ex.target = sum;
        return ex;
    }
};

}  // namespace

RLTaskPtr make_sum_of_digits_task() {
    return std::make_shared<SumOfDigitsTask>();
}

}  // namespace agpt
