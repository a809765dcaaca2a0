#include "core/rng.h"

#include <cmath>

namespace agpt {

uint64_t Rng::below(uint64_t n) {
    // Rejection keeps the result unbiased for any n.
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x = engine_();
    while (x >= limit) x = engine_();
    return x % n;
}

double Rng::normal() {
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
}

double Rng::trunc_normal(double std, double lo, double hi) {
    for (;;) {
        const double x = normal() * std;
        if (x >= lo && x <= hi) return x;
    }
}

}  // namespace agpt
