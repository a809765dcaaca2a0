#pragma once
// Small statistics for comparing runs over seeds: mean, sample standard deviation, Student's t
// distribution and Welch's unequal-variance t-test. `agpt compete` ranks entries by mean final
// validation loss and marks those the test cannot tell from the leader.
#include <vector>

namespace agpt {

double mean_of(const std::vector<double>& x);
// Sample standard deviation (divides by n - 1); 0 for fewer than two values.
double sample_std(const std::vector<double>& x);

// The regularised incomplete beta function I_x(a, b), a, b > 0, x in [0, 1].
double incomplete_beta(double a, double b, double x);
// P(T <= t) for Student's t with df > 0 degrees of freedom (df need not be an integer).
double student_t_cdf(double t, double df);
// The q-quantile of Student's t (0 < q < 1).
double student_t_quantile(double q, double df);

struct WelchTest {
    double t = 0;   // (mean(a) - mean(b)) / standard error
    double df = 0;  // Welch–Satterthwaite degrees of freedom
    double p = 1;   // two-sided p-value
};

// Welch's two-sided t-test of equal means. Needs at least two values in each sample. When both
// samples have zero variance, p is 1 if the means are equal and 0 otherwise (df is then NaN).
WelchTest welch_t_test(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace agpt
