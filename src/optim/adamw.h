#pragma once
#include <cstddef>
#include <vector>
// AdamW over the model's flat parameter buffer: state m and v are flat buffers of the same
// size, so one call updates every parameter.
namespace agpt {

struct AdamWConfig {
    double lr = 8e-4;
    double beta1 = 0.9;
    double beta2 = 0.95;
    double eps = 1e-8;
    double weight_decay = 0.1;
};

class AdamW {
  public:
    AdamW(const AdamWConfig& cfg, std::size_t n_params);
    // Applies one update with learning rate lr (the schedule's value for this step).
    void step(float* params, const float* grads, double lr);
    long steps_taken() const { return step_; }
    // Restores the bias-correction step count when resuming from a checkpoint.
    void set_steps_taken(long steps) { step_ = steps; }
    std::vector<float>& m() { return m_; }
    std::vector<float>& v() { return v_; }

  private:
    AdamWConfig cfg_;
    std::vector<float> m_, v_;
    long step_ = 0;
};

}  // namespace agpt
