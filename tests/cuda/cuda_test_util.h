#pragma once
// Helpers for the CUDA op tests: each test draws random inputs (fixed seed, fresh per case),
// runs the CPU kernel and the CUDA kernel on the same values and compares ‖out−ref‖/‖ref‖
// against a stated tolerance. Device outputs that a kernel overwrites are poisoned with NaN
// first, so an element it forgets fails the comparison. Without a device every test prints
// "skipped: no CUDA device" and passes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/device.h"

#define AGPT_REQUIRE_CUDA_DEVICE()                                                        \
    do {                                                                                  \
        if (!::agpt::cuda::device_available()) GTEST_SKIP() << "skipped: no CUDA device"; \
    } while (0)

namespace agpt::cuda::test {

// Tolerances on ‖out−ref‖/‖ref‖. fp32: the two backends sum in different orders (and nvcc
// contracts multiply-adds), ~1e-7..1e-6 in practice. bf16: one rounding of each output to 8
// significant bits (2^-9 relative at most, ~1e-3 in norm); inputs are bf16 on both sides.
constexpr double kTolFp32 = 1e-5;
constexpr double kTolFp32Long = 1e-4;  // long reductions (GEMM over K, attention over T)
constexpr double kTolBf16 = 1e-2;

using Rng = std::mt19937_64;

inline std::vector<float> random_floats(std::size_t n, Rng& rng, float lo = -1.0f,
                                        float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

inline std::vector<int32_t> random_tokens(std::size_t n, int V, Rng& rng) {
    std::uniform_int_distribution<int32_t> dist(0, V - 1);
    std::vector<int32_t> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

template <typename T>
inline T from_f(float x) {
    if constexpr (std::is_same_v<T, float>)
        return x;
    else
        return __float2bfloat16(x);
}
inline float to_f(float x) {
    return x;
}
inline float to_f(bf16 x) {
    return __bfloat162float(x);
}

// The values as type T stores them: CPU references run on exactly the GPU's inputs.
template <typename T>
inline std::vector<float> representable(std::vector<float> v) {
    if constexpr (!std::is_same_v<T, float>)
        for (float& x : v) x = to_f(from_f<T>(x));
    return v;
}

// A device array of T mirroring a host vector of float.
template <typename T>
class Dev {
  public:
    explicit Dev(const std::vector<float>& host) : buf_(host.size()) {
        std::vector<T> tmp(host.size());
        for (std::size_t i = 0; i < host.size(); ++i) tmp[i] = from_f<T>(host[i]);
        buf_.upload(tmp.data());
    }
    // n elements, every one NaN.
    static Dev poisoned(std::size_t n) {
        Dev d(n);
        d.buf_.fill_bytes(0xFF);
        return d;
    }
    T* ptr() { return buf_.data(); }
    std::vector<float> get() const {
        AGPT_CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<T> tmp(buf_.size());
        buf_.download(tmp.data());
        std::vector<float> out(tmp.size());
        for (std::size_t i = 0; i < tmp.size(); ++i) out[i] = to_f(tmp[i]);
        return out;
    }

  private:
    explicit Dev(std::size_t n) : buf_(n) {}
    DeviceBuffer<T> buf_;
};

template <typename U>
inline DeviceBuffer<U> upload(const std::vector<U>& host) {
    DeviceBuffer<U> d(host.size());
    d.upload(host.data());
    return d;
}

// ‖got − ref‖ / ‖ref‖ in double (‖got − ref‖ when ref is 0); NaN if got holds one.
inline double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
    double num = 0.0, den = 0.0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double d = static_cast<double>(got[i]) - ref[i];
        num += d * d;
        den += static_cast<double>(ref[i]) * ref[i];
    }
    return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Compares, prints one line, and records the worst err/tol of the test as the property
// "worst" (the device check script's summary table reads it from the JSON report).
inline void expect_close(const std::string& what, const std::vector<float>& got,
                         const std::vector<float>& ref, double tol) {
    ASSERT_EQ(got.size(), ref.size()) << what;
    std::size_t nans = 0;
    for (float x : got) nans += std::isnan(x) ? 1 : 0;
    const double e = rel_err(got, ref);
    std::printf("    %-44s rel err %.2e (tol %.0e)%s\n", what.c_str(), e, tol, nans ? " NaN!" : "");
    static std::string current_test;
    static double worst = -1.0;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "";
    if (name != current_test) {
        current_test = name;
        worst = -1.0;
    }
    const double ratio = std::isnan(e) ? 1e30 : tol > 0.0 ? e / tol : (e > 0.0 ? 1e30 : 0.0);
    if (ratio > worst) {
        worst = ratio;
        char buf[160];
        std::snprintf(buf, sizeof buf, "%.2e/%.0e %s", e, tol, what.c_str());
        ::testing::Test::RecordProperty("worst", buf);
    }
    EXPECT_EQ(nans, 0u) << what << ": " << nans << " elements not written (NaN poison)";
    EXPECT_LE(e, tol) << what;
}

}  // namespace agpt::cuda::test
