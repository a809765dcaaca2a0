#pragma once
#include <string>
// Learning-rate schedules with torchtitan's semantics: linear warm-up, a stable phase, then a
// decay (linear, sqrt or cosine) over the last decay_ratio of the steps towards
// min_lr_factor · lr, which is reached one (virtual) step after the last. Step numbers are 1-based
// training steps; step s uses the factor torchtitan's LambdaLR gives after s-1 scheduler steps.
namespace agpt {

struct LrScheduleConfig {
    int warmup_steps = 200;
    double decay_ratio = -1.0;  // < 0: decay over all steps after warm-up (torchtitan's None)
    std::string decay_type = "linear";  // linear | sqrt | cosine
    double min_lr_factor = 0.0;
};

class LrSchedule {
  public:
    LrSchedule(const LrScheduleConfig& cfg, int training_steps);
    // Multiplier on the base learning rate for 1-based training step `step`.
    double factor(int step) const;
    // Phase lengths after torchtitan's clamping; stable includes its one virtual step at the end.
    int warmup_steps() const { return warmup_; }
    int stable_steps() const { return stable_; }
    int decay_steps() const { return decay_; }

  private:
    int warmup_ = 0, stable_ = 0, decay_ = 0;
    int decay_kind_ = 0;
    double min_factor_ = 0.0;
};

}  // namespace agpt
