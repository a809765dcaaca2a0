// Student's t and Welch's test against independent numbers: quantiles from a printed t-table
// (three decimals), p-values from numerically integrating the t density (Python, midpoint rule
// over 2·10⁵ points after mapping [|t|, ∞) to [0, 1)).
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "tools/stats.h"

namespace agpt {
namespace {

TEST(Stats, MeanAndSampleStd) {
    EXPECT_DOUBLE_EQ(mean_of({1, 2, 3, 4, 5}), 3.0);
    EXPECT_DOUBLE_EQ(sample_std({1, 2, 3, 4, 5}), std::sqrt(2.5));
    EXPECT_EQ(sample_std({7.0}), 0.0);
    EXPECT_TRUE(std::isnan(mean_of({})));
}

TEST(Stats, IncompleteBetaClosedForms) {
    // I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1-x)^b; I_x(1/2, 1/2) = (2/π) asin √x.
    for (double x : {0.0, 0.1, 0.37, 0.5, 0.9, 1.0}) {
        EXPECT_NEAR(incomplete_beta(1, 1, x), x, 1e-14);
        EXPECT_NEAR(incomplete_beta(3.5, 1, x), std::pow(x, 3.5), 1e-13);
        EXPECT_NEAR(incomplete_beta(1, 2.5, x), 1 - std::pow(1 - x, 2.5), 1e-13);
        EXPECT_NEAR(incomplete_beta(0.5, 0.5, x), 2 / M_PI * std::asin(std::sqrt(x)), 1e-12);
    }
    EXPECT_THROW(incomplete_beta(0, 1, 0.5), Error);
    EXPECT_THROW(incomplete_beta(1, 1, 1.5), Error);
}

TEST(Stats, StudentTCdfClosedForms) {
    // df = 1 is Cauchy: 1/2 + atan(t)/π; df = 2: 1/2 + t / (2 √(2 + t²)).
    for (double t : {-7.0, -1.3, 0.0, 0.4, 2.0, 30.0}) {
        EXPECT_NEAR(student_t_cdf(t, 1), 0.5 + std::atan(t) / M_PI, 1e-13);
        EXPECT_NEAR(student_t_cdf(t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-13);
    }
}

TEST(Stats, StudentTQuantileMatchesTable) {
    const struct {
        double q, df, table;
    } rows[] = {{0.975, 1, 12.706}, {0.975, 2, 4.303},  {0.975, 3, 3.182},   {0.975, 5, 2.571},
                {0.975, 10, 2.228}, {0.975, 30, 2.042}, {0.975, 120, 1.980}, {0.95, 10, 1.812},
                {0.995, 4, 4.604},  {0.9, 7, 1.415}};
    for (const auto& r : rows) {
        EXPECT_NEAR(student_t_quantile(r.q, r.df), r.table, 5e-4) << "q " << r.q << " df " << r.df;
        EXPECT_NEAR(student_t_quantile(1 - r.q, r.df), -r.table, 5e-4);
        EXPECT_NEAR(student_t_cdf(student_t_quantile(r.q, r.df), r.df), r.q, 1e-12);
    }
    EXPECT_NEAR(student_t_quantile(0.975, 1e7), 1.95996, 1e-4);  // the normal limit
}

TEST(Stats, TwoSidedPValuesMatchNumericalIntegration) {
    EXPECT_NEAR(2 * (1 - student_t_cdf(2.0, 10)), 0.0733880, 1e-6);
    EXPECT_NEAR(2 * student_t_cdf(-1.0, 3.5), 0.3813373, 1e-6);
}

TEST(Stats, WelchTestMatchesIndependentComputation) {
    const struct {
        std::vector<double> a, b;
        double t, df, p;
    } cases[] = {
        {{1, 2, 3, 4, 5}, {2, 4, 6, 8, 10}, -1.8973666, 5.8823529, 0.1075312},
        {{1.512, 1.498, 1.505}, {1.530, 1.541, 1.527}, -4.7140832, 3.9893727, 0.0092717},
        {{1.512, 1.498, 1.505}, {1.509, 1.520, 1.503}, -0.8837879, 3.8380667, 0.4286924},
    };
    for (const auto& c : cases) {
        const WelchTest w = welch_t_test(c.a, c.b);
        EXPECT_NEAR(w.t, c.t, 1e-6);
        EXPECT_NEAR(w.df, c.df, 1e-6);
        EXPECT_NEAR(w.p, c.p, 1e-6);
        // Swapping the samples flips t and keeps p.
        const WelchTest s = welch_t_test(c.b, c.a);
        EXPECT_NEAR(s.t, -w.t, 1e-12);
        EXPECT_NEAR(s.p, w.p, 1e-12);
    }
}

TEST(Stats, WelchTestDegenerateSamples) {
    EXPECT_EQ(welch_t_test({1.5, 1.5}, {1.5, 1.5}).p, 1.0);  // identical, no spread: a tie
    EXPECT_EQ(welch_t_test({1.5, 1.5}, {1.6, 1.6}).p, 0.0);  // no spread, different means
    EXPECT_THROW(welch_t_test({1.0}, {1.0, 2.0}), Error);
}

}  // namespace
}  // namespace agpt
