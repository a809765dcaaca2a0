#pragma once
// exp written as plain arithmetic so that loops calling it vectorise (libm's expf is a scalar
// call unless -ffast-math, which we do not use). Range reduction x = n·ln2 + r, |r| <= ln2/2,
// then a Taylor polynomial: relative error ~1e-7 (float), ~1e-16 (double). -inf (masked
// attention scores) gives exactly 0.
#include <algorithm>
#include <bit>
#include <cstdint>

namespace agpt::cpu {

inline float exp_vec(float x) {
    constexpr float lo = -87.0f;  // below this exp underflows float's normal range
    const float xc = std::min(std::max(x, lo), 88.0f);
    constexpr float round_magic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
    const float n = (xc * 1.44269504088896341f + round_magic) - round_magic;
    float r = xc - n * 0.693359375f;  // ln2 split so that n·hi is exact
    r = r - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
    return x < lo ? 0.0f : p * scale;
}

inline double exp_vec(double x) {
    constexpr double lo = -708.0;
    const double xc = std::min(std::max(x, lo), 709.0);
    constexpr double round_magic = 6755399441055744.0;  // 1.5·2^52
    const double n = (xc * 1.4426950408889634074 + round_magic) - round_magic;
    double r = xc - n * 6.93147180369123816490e-01;
    r = r - n * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;  // 1/13!, then down to 1/0!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const double scale = std::bit_cast<double>((static_cast<int64_t>(n) + 1023) << 52);
    return x < lo ? 0.0 : p * scale;
}

}  // namespace agpt::cpu
