// Multi-head latent attention (model/mla.h): the forward against a plain per-position
// reference written from DeepSeek-V3's definition, and every gradient against central finite
// differences in double precision, with and without the q LoRA, with v narrower and wider than
// the q/k heads, and with YaRN on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/mla.h"

namespace agpt {
namespace {

using Vec = std::vector<double>;

struct MlaCase {
    const char* name;
    MlaShape shape;
};

MlaShape mla_shape(int q_lora, int v_head, bool yarn) {
    MlaShape s;
    s.dim = 12;
    s.n_heads = 3;
    s.q_lora_rank = q_lora;
    s.kv_lora_rank = 6;
    s.qk_nope_head_dim = 4;
    s.qk_rope_head_dim = 4;
    s.v_head_dim = v_head;
    s.rope_theta = 100.0;
    s.max_seq_len = yarn ? 64 : 8;
    s.original_seq_len = 8;
    s.rope_factor = 4.0;
    s.beta_fast = 4;
    s.beta_slow = 1;
    return s;
}

struct MlaParams {
    std::map<std::string, Vec> p;
    explicit MlaParams(const MlaShape& s, uint64_t seed) {
        Rng rng(seed);
        const int D = s.dim, H = s.n_heads, P = s.qk_head_dim(), R = s.qk_rope_head_dim,
                  V = s.v_head_dim, KVR = s.kv_lora_rank, QR = s.q_lora_rank;
        auto make = [&](const std::string& name, std::size_t n, double std, double mean = 0) {
            Vec v(n);
            for (auto& x : v) x = mean + std * rng.normal();
            p[name] = v;
        };
        if (QR > 0) {
            make("wq_a", QR * D, 0.4);
            make("q_norm", QR, 0.1, 1.0);
            make("wq_b", H * P * QR, 0.4);
        } else {
            make("wq", H * P * D, 0.4);
        }
        make("wkv_a", (KVR + R) * D, 0.4);
        make("kv_norm", KVR, 0.1, 1.0);
        make("wkv_b", H * (s.qk_nope_head_dim + V) * KVR, 0.4);
        make("wo", D * H * V, 0.4);
    }
    const double* get(const char* n) const { return p.count(n) ? p.at(n).data() : nullptr; }
    MlaWeights<double> weights() const {
        return {get("wq"),    get("wq_a"),    get("q_norm"), get("wq_b"),
                get("wkv_a"), get("kv_norm"), get("wkv_b"),  get("wo")};
    }
};

// y = W x for W (O, I).
Vec linear(const double* W, const double* x, int O, int I) {
    Vec y(O, 0.0);
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) y[o] += W[o * I + i] * x[i];
    return y;
}

Vec rmsnorm(const Vec& x, const double* w, double eps) {
    double ms = 0;
    for (double v : x) ms += v * v;
    const double r = 1 / std::sqrt(ms / x.size() + eps);
    Vec y(x.size());
    for (std::size_t i = 0; i < x.size(); i++) y[i] = x[i] * r * w[i];
    return y;
}

// rotate-half RoPE of v (R) at position t.
void rope(double* v, int R, int t, const std::vector<double>& freq) {
    for (int i = 0; i < R / 2; i++) {
        const double c = std::cos(t * freq[i]), s = std::sin(t * freq[i]);
        const double a = v[i], b = v[i + R / 2];
        v[i] = a * c - b * s;
        v[i + R / 2] = b * c + a * s;
    }
}

Vec mla_reference(const MlaShape& s, const MlaParams& m, const Vec& x, int B, int T) {
    const int D = s.dim, H = s.n_heads, Pn = s.qk_nope_head_dim, R = s.qk_rope_head_dim, P = Pn + R,
              V = s.v_head_dim, KVR = s.kv_lora_rank, QR = s.q_lora_rank;
    const std::vector<double> freq = mla_rope_inv_freq(s);
    Vec out(static_cast<std::size_t>(B) * T * D, 0.0);
    for (int b = 0; b < B; b++) {
        std::vector<Vec> q(T), k(T), v(T);
        for (int t = 0; t < T; t++) {
            const double* xt = x.data() + (b * T + t) * D;
            q[t] =
                QR > 0
                    ? linear(m.get("wq_b"),
                             rmsnorm(linear(m.get("wq_a"), xt, QR, D), m.get("q_norm"), s.norm_eps)
                                 .data(),
                             H * P, QR)
                    : linear(m.get("wq"), xt, H * P, D);
            Vec kva = linear(m.get("wkv_a"), xt, KVR + R, D);
            const Vec latent(kva.begin(), kva.begin() + KVR);
            Vec kpe(kva.begin() + KVR, kva.end());
            rope(kpe.data(), R, t, freq);
            const Vec kv =
                linear(m.get("wkv_b"), rmsnorm(latent, m.get("kv_norm"), s.norm_eps).data(),
                       H * (Pn + V), KVR);
            k[t].assign(H * P, 0.0);
            v[t].assign(H * V, 0.0);
            for (int h = 0; h < H; h++) {
                rope(q[t].data() + h * P + Pn, R, t, freq);
                for (int i = 0; i < Pn; i++) k[t][h * P + i] = kv[h * (Pn + V) + i];
                for (int i = 0; i < R; i++) k[t][h * P + Pn + i] = kpe[i];
                for (int i = 0; i < V; i++) v[t][h * V + i] = kv[h * (Pn + V) + Pn + i];
            }
        }
        for (int t = 0; t < T; t++) {
            Vec o(H * V, 0.0);
            for (int h = 0; h < H; h++) {
                Vec sc(t + 1);
                for (int u = 0; u <= t; u++) {
                    double d = 0;
                    for (int i = 0; i < P; i++) d += q[t][h * P + i] * k[u][h * P + i];
                    sc[u] = d * s.softmax_scale();
                }
                const double mx = *std::max_element(sc.begin(), sc.end());
                double sum = 0;
                for (auto& e : sc) sum += e = std::exp(e - mx);
                for (int u = 0; u <= t; u++)
                    for (int i = 0; i < V; i++) o[h * V + i] += sc[u] / sum * v[u][h * V + i];
            }
            const Vec y = linear(m.get("wo"), o.data(), D, H * V);
            for (int c = 0; c < D; c++) out[(b * T + t) * D + c] = y[c];
        }
    }
    return out;
}

void PrintTo(const MlaCase& c, std::ostream* os) {
    *os << c.name;
}

class MlaLayer : public ::testing::TestWithParam<MlaCase> {};

TEST_P(MlaLayer, ForwardEqualsPlainReference) {
    const MlaShape s = GetParam().shape;
    const int B = 2, T = 7;
    MlaParams m(s, 1);
    Rng rng(2);
    Vec x(static_cast<std::size_t>(B) * T * s.dim);
    for (auto& v : x) v = rng.normal();
    Mla<double> mla(s, B, T + 1);
    Vec out(x.size(), 0.0);
    mla.forward(out.data(), x.data(), m.weights(), B, T);
    const Vec ref = mla_reference(s, m, x, B, T);
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < out.size(); i++) {
        worst = std::max(worst, std::abs(out[i] - ref[i]));
        scale = std::max(scale, std::abs(ref[i]));
    }
    EXPECT_GT(scale, 1e-2);
    EXPECT_LT(worst / scale, 1e-12);
}

TEST_P(MlaLayer, GradientsMatchFiniteDifferences) {
    const MlaShape s = GetParam().shape;
    const int B = 2, T = 5;
    MlaParams m(s, 3);
    Rng rng(4);
    Vec x(static_cast<std::size_t>(B) * T * s.dim), R(x.size());
    for (auto& v : x) v = rng.normal();
    for (auto& v : R) v = rng.normal();
    Mla<double> mla(s, B, T);
    auto loss = [&]() {
        Vec out(x.size(), 0.0);
        mla.forward(out.data(), x.data(), m.weights(), B, T);
        double l = 0;
        for (std::size_t i = 0; i < out.size(); i++) l += out[i] * R[i];
        return l;
    };
    std::map<std::string, Vec> g;
    for (const auto& [name, v] : m.p) g[name].assign(v.size(), 0.0);
    auto gp = [&](const char* n) { return g.count(n) ? g.at(n).data() : nullptr; };
    const MlaGrads<double> grads{gp("wq"),    gp("wq_a"),    gp("q_norm"), gp("wq_b"),
                                 gp("wkv_a"), gp("kv_norm"), gp("wkv_b"),  gp("wo")};
    Vec dx(x.size(), 0.0);
    loss();
    mla.backward(dx.data(), grads, R.data(), x.data(), m.weights(), B, T);
    auto check = [&](const std::string& what, Vec& p, const Vec& grad) {
        const double h = 1e-6;
        double worst = 0, scale = 1e-3;
        // Up to ~64 evenly spaced entries per tensor (all of the small ones).
        const std::size_t stride = std::max<std::size_t>(1, p.size() / 64);
        for (std::size_t i = 0; i < p.size(); i += stride) {
            const double keep = p[i];
            p[i] = keep + h;
            const double lp = loss();
            p[i] = keep - h;
            const double lm = loss();
            p[i] = keep;
            worst = std::max(worst, std::abs((lp - lm) / (2 * h) - grad[i]));
            scale = std::max(scale, std::abs(grad[i]));
        }
        EXPECT_LT(worst / scale, 1e-6) << what;
    };
    check("x", x, dx);
    for (auto& [name, v] : m.p) check(name, v, g[name]);
}

INSTANTIATE_TEST_SUITE_P(Cases, MlaLayer,
                         ::testing::Values(MlaCase{"q_lora", mla_shape(5, 3, false)},
                                           MlaCase{"plain_wq", mla_shape(0, 3, false)},
                                           MlaCase{"v_wider_than_qk", mla_shape(5, 10, false)},
                                           MlaCase{"yarn", mla_shape(5, 3, true)}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(MlaRope, YarnLeavesFastDimensionsAndStretchesSlowOnes) {
    MlaShape s = mla_shape(0, 4, false);
    s.qk_rope_head_dim = 16;
    s.rope_theta = 10000.0;
    s.original_seq_len = 4096;
    s.beta_fast = 32;
    s.beta_slow = 1;
    s.rope_factor = 40.0;
    s.max_seq_len = 4096;
    const std::vector<double> plain = mla_rope_inv_freq(s);
    for (int i = 0; i < 8; i++) EXPECT_DOUBLE_EQ(plain[i], std::pow(10000.0, -2.0 * i / 16));
    s.max_seq_len = 16384;
    const std::vector<double> yarn = mla_rope_inv_freq(s);
    // Correction range for dim 16, base 1e4, 4096 positions: floor(2.62) = 2 .. ceil(5.63) = 6:
    // dimensions up to 2 keep their frequency, those from 6 on are ÷40, a linear ramp between.
    for (int i = 0; i < 8; i++) {
        const double ramp = std::clamp((i - 2.0) / (6.0 - 2.0), 0.0, 1.0);
        EXPECT_NEAR(yarn[i], plain[i] * (1 - ramp) + plain[i] / 40.0 * ramp, 1e-15) << i;
    }
    EXPECT_DOUBLE_EQ(yarn[0], plain[0]);
    EXPECT_NEAR(s.softmax_scale(),
                std::pow(0.1 * std::log(40.0) + 1.0, 2) / std::sqrt(s.qk_head_dim()), 1e-15);
}

}  // namespace
}  // namespace agpt
