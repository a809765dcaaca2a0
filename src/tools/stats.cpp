#include "tools/stats.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace agpt {

double mean_of(const std::vector<double>& x) {
    if (x.empty()) return std::numeric_limits<double>::quiet_NaN();
    double s = 0;
    for (double v : x) s += v;
    return s / static_cast<double>(x.size());
}

double sample_std(const std::vector<double>& x) {
    if (x.size() < 2) return 0.0;
    const double m = mean_of(x);
    double ss = 0;
    for (double v : x) ss += (v - m) * (v - m);
    return std::sqrt(ss / static_cast<double>(x.size() - 1));
}

namespace {

// The continued fraction of I_x(a, b) (modified Lentz), which converges fast for
// x < (a + 1) / (a + b + 2); the caller uses the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
double beta_continued_fraction(double a, double b, double x) {
    constexpr double tiny = 1e-300, eps = 1e-16;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (std::fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        const double m2 = 2.0 * m;
        double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + num * d;
        if (std::fabs(d) < tiny) d = tiny;
        c = 1.0 + num / c;
        if (std::fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        h *= d * c;
        num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + num * d;
        if (std::fabs(d) < tiny) d = tiny;
        c = 1.0 + num / c;
        if (std::fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        const double delta = d * c;
        h *= delta;
        if (std::fabs(delta - 1.0) < eps) break;
    }
    return h;
}

}  // namespace

double incomplete_beta(double a, double b, double x) {
    if (!(a > 0) || !(b > 0)) fail("incomplete_beta: a = {} and b = {} must be positive", a, b);
    if (!(x >= 0 && x <= 1)) fail("incomplete_beta: x = {} must be in [0, 1]", x);
    if (x == 0 || x == 1) return x;
    const double log_front =
        std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0))
        return std::exp(log_front) * beta_continued_fraction(a, b, x) / a;
    return 1.0 - std::exp(log_front) * beta_continued_fraction(b, a, 1.0 - x) / b;
}

double student_t_cdf(double t, double df) {
    if (!(df > 0)) fail("student_t_cdf: df = {} must be positive", df);
    if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
    // P(|T| > |t|) = I_{df/(df+t²)}(df/2, 1/2).
    const double tail = 0.5 * incomplete_beta(0.5 * df, 0.5, df / (df + t * t));
    return t > 0 ? 1.0 - tail : tail;
}

double student_t_quantile(double q, double df) {
    if (!(q > 0 && q < 1)) fail("student_t_quantile: q = {} must be in (0, 1)", q);
    if (q < 0.5) return -student_t_quantile(1.0 - q, df);
    double lo = 0.0, hi = 1.0;
    while (student_t_cdf(hi, df) < q) hi *= 2.0;
    for (int i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
        const double mid = 0.5 * (lo + hi);
        (student_t_cdf(mid, df) < q ? lo : hi) = mid;
    }
    return 0.5 * (lo + hi);
}

WelchTest welch_t_test(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() < 2 || b.size() < 2)
        fail("welch_t_test: needs at least two values per sample (got {} and {})", a.size(),
             b.size());
    const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
    const double va = std::pow(sample_std(a), 2) / na, vb = std::pow(sample_std(b), 2) / nb;
    const double diff = mean_of(a) - mean_of(b);
    WelchTest r;
    if (va + vb == 0) {
        r.t = diff == 0 ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), diff);
        r.df = std::numeric_limits<double>::quiet_NaN();
        r.p = diff == 0 ? 1.0 : 0.0;
        return r;
    }
    r.t = diff / std::sqrt(va + vb);
    r.df = (va + vb) * (va + vb) / (va * va / (na - 1) + vb * vb / (nb - 1));
    r.p = incomplete_beta(0.5 * r.df, 0.5, r.df / (r.df + r.t * r.t));
    return r;
}

}  // namespace agpt
