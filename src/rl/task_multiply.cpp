// multiply: "37*54=" -> "1998". Difficulty: the digits of each factor.
#include "core/rng.h"
#include "rl/task.h"

namespace agpt {

namespace {

class MultiplyTask : public IntegerAnswerTask {
  public:
    std::string name() const override { return "multiply"; }
    std::string description() const override {
        return "multiply two numbers; difficulty: digits of each";
    }
    int default_difficulty() const override { return 2; }
    int max_difficulty() const override { return 9; }
    TaskExample generate(uint64_t seed, int difficulty) const override {
        Rng rng(seed);
        long lo = 1;
        for (int i = 1; i < difficulty; i++) lo *= 10;
        const long span = lo == 1 ? 9 : 9 * lo;  // [lo, 10·lo)
        const long a = lo + static_cast<long>(rng.below(static_cast<uint64_t>(span)));
        const long b = lo + static_cast<long>(rng.below(static_cast<uint64_t>(span)));
        TaskExample ex;
        ex.prompt = std::to_string(a) + "*" + std::to_string(b) + "=";
        ex.answer = std::to_string(a * b);
        ex.operands = {a, b};
        ex.target = a * b;
        return ex;
    }
};

}  // namespace

RLTaskPtr make_multiply_task() {
    return std::make_shared<MultiplyTask>();
}

}  // namespace agpt
