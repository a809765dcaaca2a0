#pragma once
// A seeded generator whose sequences are identical on every compiler and standard library:
// std::mt19937_64 is fully specified, the distributions below are written out (the standard
// library's distributions are implementation-defined).
#include <cstdint>
#include <random>

namespace agpt {

class Rng {
  public:
    explicit Rng(uint64_t seed) : engine_(seed) {}
    uint64_t next_u64() { return engine_(); }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
    // Uniform integer in [0, n).
    uint64_t below(uint64_t n);
    // Standard normal (Box-Muller; the second value is cached).
    double normal();
    // Normal(0, std) truncated to [lo, hi] by rejection, as torch.nn.init.trunc_normal_ defines it.
    double trunc_normal(double std, double lo, double hi);

  private:
    std::mt19937_64 engine_;
    bool has_spare_ = false;
    double spare_ = 0.0;
};

}  // namespace agpt
