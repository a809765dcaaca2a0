// The architecture switches on the whole model (QK-norm, attention and final soft-capping,
// ReLU²): parameter layout, finite differences through the float model, the KV-cache path, the
// Hugging Face mapping (QK-norm as Qwen3, the rest refused), `agpt models`, and a short training
// run of a kitchen-sink flavor. The kernels' own double-precision checks are in kernels_test.cpp;
// the comparison with the PyTorch reference in tests/torch_ref.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/gpt2.h"
#include "model/hf_llama.h"
#include "model/hf_llama_io.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "tools/hf_export.h"
#include "tools/models.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_switches_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

ModelArgs tiny_with(ModelSwitches sw, int vocab = 50) {
    ModelArgs a = resolve_model_args("tiny", sw);
    a.vocab_size = vocab;
    return a;
}

// Every switch at once, with caps small enough to bend typical logits.
const ModelSwitches kAllStrong{true, 2.0, 3.0, "relu2"};

std::vector<int32_t> random_ids(uint64_t seed, std::size_t n, int V) {
    Rng rng(seed);
    std::vector<int32_t> ids(n);
    for (auto& t : ids) t = static_cast<int32_t>(rng.below(V));
    return ids;
}

// Weights with non-trivial norm gains (init sets them to 1) and larger head logits, so that
// every switch's gradient path is exercised away from its identity point.
void init_for_checks(Transformer& m, uint64_t seed) {
    m.init_weights("agpt", seed);
    Rng rng(seed + 100);
    for (const auto& v : m.param_views()) {
        float* p = m.params().data() + v.offset;
        if (v.role == "norm")
            for (std::size_t i = 0; i < v.numel(); i++)
                p[i] = static_cast<float>(1.0 + 0.3 * rng.normal());
        if (v.role == "head")
            for (std::size_t i = 0; i < v.numel(); i++) p[i] *= 3.0f;
    }
}

TEST(ModelSwitches, ParameterViewsFollowTheSwitches) {
    const ModelArgs a = tiny_with(kAllStrong);
    Transformer m(a, 1, 4);
    EXPECT_EQ(static_cast<long>(m.params().size()), a.num_params());
    const auto& q = m.view("layers.1.attention.q_norm.weight");
    EXPECT_EQ(q.shape, std::vector<int>{a.head_dim()});
    EXPECT_EQ(q.role, "norm");
    EXPECT_EQ(m.view("layers.0.attention.k_norm.weight").role, "norm");
    EXPECT_EQ(m.view("layers.0.feed_forward.w1.weight").shape, (std::vector<int>{288, 64}));
    EXPECT_EQ(m.view("layers.0.feed_forward.w2.weight").shape, (std::vector<int>{64, 288}));
    EXPECT_THROW(m.view("layers.0.feed_forward.w3.weight"), Error);
    m.init_weights("agpt", 1);
    for (float x : std::vector<float>(m.param("layers.1.attention.k_norm.weight"),
                                      m.param("layers.1.attention.k_norm.weight") + 16))
        EXPECT_EQ(x, 1.0f);
    // Checkpoint names: Qwen3's for the q/k norms.
    EXPECT_EQ(hf_llama_name("layers.3.attention.q_norm.weight"),
              "model.layers.3.self_attn.q_norm.weight");
    EXPECT_EQ(hf_llama_name("layers.3.attention.k_norm.weight"),
              "model.layers.3.self_attn.k_norm.weight");

    // QK-norm adds only norms (initialised to 1 without drawing random numbers), so the other
    // weights equal the plain model's for the same seed: A/B runs start from the same point.
    Transformer plain(tiny_with({}), 1, 4), qk(tiny_with({true, 0, 0, "swiglu"}), 1, 4);
    plain.init_weights("agpt", 9);
    qk.init_weights("agpt", 9);
    for (const auto& v : plain.param_views())
        EXPECT_EQ(0, std::memcmp(plain.params().data() + v.offset, qk.param(v.name),
                                 v.numel() * sizeof(float)))
            << v.name;
}

// Directional finite differences through the whole float model: for each parameter tensor and
// a random direction d, (L(p + εd) − L(p − εd)) / 2ε against Σ grad·d. Float rounding of the
// loss limits this to about 1e-3 relative; the PyTorch comparison (tests/torch_ref) is the
// precise check, this one shows that each switch's backward is wired into the model.
void check_model_directional_gradients(const ModelArgs& a, double tol) {
    const int B = 2, T = 20;
    Transformer m(a, B, T);
    init_for_checks(m, 3);
    const auto tok = random_ids(11, B * T, a.vocab_size), tgt = random_ids(12, B * T, a.vocab_size);
    m.zero_grad();
    m.forward_backward(tok.data(), tgt.data(), B, T, 1.0);
    const std::vector<float> grads = m.grads();
    Rng rng(21);
    int checked = 0;
    double worst = 0;
    for (const auto& v : m.param_views()) {
        if (v.role == "embedding") continue;  // rows of absent tokens: a sparse gradient
        const std::size_t n = v.numel();
        float* p = m.params().data() + v.offset;
        const std::vector<float> saved(p, p + n);
        double rms = 0;
        for (float x : saved) rms += static_cast<double>(x) * x;
        rms = std::sqrt(rms / static_cast<double>(n));
        std::vector<double> d(n);
        double analytic = 0;
        for (std::size_t i = 0; i < n; i++) {
            d[i] = rng.normal();
            analytic += d[i] * grads[v.offset + i];
        }
        const double eps = 1e-3 * rms;
        auto loss_at = [&](double s) {
            for (std::size_t i = 0; i < n; i++) p[i] = static_cast<float>(saved[i] + s * d[i]);
            return m.forward_loss(tok.data(), tgt.data(), B, T);
        };
        const double numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
        std::copy(saved.begin(), saved.end(), p);
        double gnorm = 0;
        for (std::size_t i = 0; i < n; i++)
            gnorm += static_cast<double>(grads[v.offset + i]) * grads[v.offset + i];
        // Relative to |grad|·|d| ≈ |grad|·√n: the size of a directional derivative.
        const double scale = std::sqrt(gnorm * static_cast<double>(n));
        worst = std::max(worst, std::abs(numeric - analytic) / scale);
        EXPECT_LT(std::abs(numeric - analytic), tol * scale)
            << v.name << ": numeric " << numeric << " analytic " << analytic;
        EXPECT_GT(gnorm, 0.0) << v.name;
        checked++;
    }
    EXPECT_GT(checked, 10);
    std::printf("  %s: %d tensors, worst |numeric - analytic| / (|grad|·|d|) = %.2e\n",
                a.describe_switches().c_str(), checked, worst);
}

TEST(ModelSwitchesGrad, QkNorm) {
    check_model_directional_gradients(tiny_with({true, 0, 0, "swiglu"}), 3e-3);
}
TEST(ModelSwitchesGrad, AttentionSoftcap) {
    check_model_directional_gradients(tiny_with({false, 2.0, 0, "swiglu"}), 3e-3);
}
TEST(ModelSwitchesGrad, FinalSoftcap) {
    check_model_directional_gradients(tiny_with({false, 0, 3.0, "swiglu"}), 3e-3);
}
TEST(ModelSwitchesGrad, Relu2) {
    check_model_directional_gradients(tiny_with({false, 0, 0, "relu2"}), 3e-3);
}
TEST(ModelSwitchesGrad, KitchenSinkWithFinalSoftcap) {
    check_model_directional_gradients(tiny_with(kAllStrong), 3e-3);
}

// forward_logits returns the capped logits; their cross-entropy is the fused head's loss.
TEST(ModelSwitches, CappedLogitsGiveTheFusedLoss) {
    const ModelArgs a = tiny_with(kAllStrong);
    const int B = 2, T = 12, V = a.vocab_size;
    Transformer m(a, B, T);
    init_for_checks(m, 4);
    const auto tok = random_ids(1, B * T, V), tgt = random_ids(2, B * T, V);
    std::vector<float> logits(static_cast<std::size_t>(B) * T * V);
    m.forward_logits(tok.data(), B, T, logits.data());
    double expected = 0, max_abs = 0;
    for (int i = 0; i < B * T; i++) {
        const float* row = logits.data() + static_cast<std::size_t>(i) * V;
        double mx = row[0], s = 0;
        for (int v = 0; v < V; v++) {
            mx = std::max(mx, static_cast<double>(row[v]));
            max_abs = std::max(max_abs, std::fabs(static_cast<double>(row[v])));
        }
        for (int v = 0; v < V; v++) s += std::exp(row[v] - mx);
        expected += mx + std::log(s) - row[tgt[i]];
    }
    EXPECT_LT(max_abs, 3.0);  // bounded by the cap
    EXPECT_GT(max_abs, 2.0);  // ... and the cap is reached for some logits
    EXPECT_NEAR(m.forward_loss(tok.data(), tgt.data(), B, T), expected, 1e-5 * expected);
    std::vector<float> last(V);
    m.last_logits(tok.data() + T, T, last.data());
    for (int v = 0; v < V; v++) EXPECT_NEAR(last[v], logits[(2 * T - 1) * V + v], 1e-5) << v;
}

TEST(ModelSwitches, KvCacheMatchesTheFullForwardWithEverySwitch) {
    const ModelArgs a = tiny_with(kAllStrong);
    const int T = 80;
    Transformer model(a, 1, T);
    init_for_checks(model, 5);
    const auto ids = random_ids(6, T, a.vocab_size);
    std::vector<float> full(static_cast<std::size_t>(T) * a.vocab_size);
    model.forward_logits(ids.data(), 1, T, full.data());
    auto worst_at = [&](int pos, const std::vector<float>& got) {
        double w = 0.0;
        for (int v = 0; v < a.vocab_size; v++)
            w = std::max(w, std::fabs(static_cast<double>(got[v]) -
                                      full[static_cast<std::size_t>(pos) * a.vocab_size + v]));
        return w;
    };
    KvCache cache(model, T);
    std::vector<float> logits(a.vocab_size);
    cache.append(ids.data(), 9, logits.data());  // prefill
    EXPECT_LT(worst_at(8, logits), 1e-4);
    for (int t = 9; t < T; t++) {
        cache.append(&ids[t], 1, logits.data());
        ASSERT_LT(worst_at(t, logits), 1e-4) << "position " << t;
    }
}

// Each switch changes the model's output on the same weights (no switch is silently ignored).
TEST(ModelSwitches, EverySwitchChangesTheLoss) {
    const int B = 1, T = 16;
    const auto tok = random_ids(7, B * T, 50), tgt = random_ids(8, B * T, 50);
    auto loss_of = [&](ModelSwitches sw) {
        Transformer m(tiny_with(sw), B, T);
        init_for_checks(m, 6);
        return m.forward_loss(tok.data(), tgt.data(), B, T);
    };
    const double plain = loss_of({});
    for (const ModelSwitches& sw :
         {ModelSwitches{true, 0, 0, "swiglu"}, ModelSwitches{false, 2.0, 0, "swiglu"},
          ModelSwitches{false, 0, 3.0, "swiglu"}})
        EXPECT_GT(std::abs(loss_of(sw) - plain), 1e-2);  // float noise in the sum: ~1e-5
}

// ---------------------------------------------------------------------------------------------
// Hugging Face: QK-norm goes out as Qwen3, the other switches are refused.

TEST(ModelSwitchesHf, QkNormExportsAsQwen3AndRoundTrips) {
    const fs::path dir = fresh_dir("qwen3");
    ModelArgs a = resolve_model_args("tiny_qknorm", {});
    a.vocab_size = 258;
    Transformer m(a, 1, 1);
    init_for_checks(m, 7);
    const fs::path hf = dir / "hf";
    fs::create_directories(hf);
    write_hf_llama_folder(m, 256, 257, hf.string());
    std::ifstream in(hf / "config.json");
    const json c = json::parse(in);
    EXPECT_EQ(c["model_type"], "qwen3");
    EXPECT_EQ(c["architectures"], json::array({"Qwen3ForCausalLM"}));
    EXPECT_EQ(c["head_dim"], 16);
    EXPECT_EQ(c["use_sliding_window"], false);
    EXPECT_FALSE(c.contains("pretraining_tp"));
    const SafetensorsFile st((hf / "model.safetensors").string());
    EXPECT_EQ(st.tensor("model.layers.1.self_attn.q_norm.weight").shape, std::vector<int64_t>{16});
    EXPECT_EQ(st.names().size(), 3u + 11u * 2u);

    const HfLlamaConfig back = read_hf_llama_config((hf / "config.json").string());
    EXPECT_TRUE(back.args.qk_norm);
    Transformer m2(a, 1, 1);
    load_hf_llama_weights(hf.string(), m2);
    EXPECT_EQ(m2.params(), m.params());
    // A Qwen3 folder does not load into a model without QK-norm, nor a Llama one into a model
    // with it.
    ModelArgs plain = a;
    plain.qk_norm = false;
    Transformer m3(plain, 1, 1);
    EXPECT_NE(error_of([&] { load_hf_llama_weights(hf.string(), m3); }).find("QK-norm"),
              std::string::npos);
    // `agpt import` finds the suffixed flavor.
    const HfImportResult imp = import_hf(hf.string(), (dir / "imported").string());
    EXPECT_EQ(imp.flavor, "tiny_qknorm");
    EXPECT_TRUE(imp.args.qk_norm);
    fs::remove_all(dir);
}

TEST(ModelSwitchesHf, SoftcapAndRelu2AreRefusedNamingTheSwitch) {
    const fs::path dir = fresh_dir("refuse");
    const std::pair<ModelSwitches, const char*> cases[] = {
        {{false, 30.0, 0, "swiglu"}, "attention-logit soft-capping (attn_softcap 30)"},
        {{false, 0, 15.0, "swiglu"}, "final-logit soft-capping (final_softcap 15)"},
        {{false, 0, 0, "relu2"}, "the relu2 FFN"},
        {kAllStrong, "soft-capping"},
    };
    for (const auto& [sw, want] : cases) {
        Transformer m(tiny_with(sw, 258), 1, 1);
        const fs::path hf = dir / "hf";
        fs::remove_all(hf);
        fs::create_directories(hf);
        const std::string e = error_of([&] { write_hf_llama_folder(m, 256, 257, hf.string()); });
        EXPECT_NE(e.find(want), std::string::npos) << e;
        EXPECT_NE(e.find("can express"), std::string::npos) << e;
        EXPECT_FALSE(fs::exists(hf / "model.safetensors"));  // nothing written
    }
    // An HF folder cannot start a soft-capped model either.
    Transformer plain(tiny_with({}, 258), 1, 1);
    const fs::path hf = dir / "plain";
    fs::create_directories(hf);
    write_hf_llama_folder(plain, 256, 257, hf.string());
    Transformer capped(tiny_with({false, 30.0, 0, "swiglu"}, 258), 1, 1);
    EXPECT_NE(error_of([&] { load_hf_llama_weights(hf.string(), capped); }).find("attn_softcap 30"),
              std::string::npos);
    fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------------------
// `agpt models`

TEST(Models, ListsEveryFlavorWithParameterCounts) {
    const auto rows = list_models();
    const std::size_t n_agpt = agpt_flavors().size();
    ASSERT_EQ(rows.size(), n_agpt + gpt2_flavors().size());
    for (std::size_t i = n_agpt; i < rows.size(); i++) {
        EXPECT_EQ(rows[i].name, "gpt2");
        EXPECT_EQ(rows[i].flavor, gpt2_flavors()[i - n_agpt].name);
    }
    // llm.c's count for GPT-2 124M (wte padded to 50304 rows): "num_parameters: 124475904".
    EXPECT_EQ(rows[n_agpt + 1].flavor, "124M");
    EXPECT_EQ(rows[n_agpt + 1].params, 124475904L);
    for (std::size_t i = 0; i < n_agpt; i++) {
        EXPECT_EQ(rows[i].name, "agpt");
        EXPECT_EQ(rows[i].flavor, agpt_flavors()[i].name);
        EXPECT_EQ(rows[i].params, agpt_flavors()[i].args.num_params());
        EXPECT_EQ(rows[i].active_params, agpt_flavors()[i].args.num_active_params());
        if (!agpt_flavors()[i].args.is_moe()) {
            EXPECT_EQ(rows[i].active_params, rows[i].params);
        }
    }
    const auto find = [&](const std::string& f) {
        for (const auto& r : rows)
            if (r.flavor == f) return r;
        ADD_FAILURE() << f;
        return ModelListing{};
    };
    EXPECT_EQ(find("8B").params, 8030261248L);
    EXPECT_EQ(find("debugmodel_kitchen_sink").switches, "qk_norm, attn_softcap 30, ffn relu2");

    const json j = json::parse(models_json(rows));
    ASSERT_TRUE(j.is_array());
    ASSERT_EQ(j.size(), rows.size());
    for (std::size_t i = 0; i < rows.size(); i++) {
        EXPECT_EQ(j[i].size(), 4u);
        EXPECT_EQ(j[i]["name"], rows[i].name);
        EXPECT_EQ(j[i]["flavor"], rows[i].flavor);
        EXPECT_EQ(j[i]["params"].get<long>(), rows[i].params);
        EXPECT_EQ(j[i]["active_params"].get<long>(), rows[i].active_params);
    }
    const std::string table = models_table(rows);
    EXPECT_NE(table.find("debugmodel_kitchen_sink"), std::string::npos);
    EXPECT_NE(table.find("8.03B"), std::string::npos);
    EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), static_cast<long>(rows.size()) + 1);
    EXPECT_EQ(format_count(999), "999");
    EXPECT_EQ(format_count(1234), "1.23K");
    EXPECT_EQ(format_count(123456), "123K");
    EXPECT_EQ(format_count(999999), "1.00M");
}

// ---------------------------------------------------------------------------------------------
// Training with every switch through the config: the trainer builds the switched model.

TEST(ModelSwitchesTrain, KitchenSinkLossFallsOnBundledCorpus) {
    const fs::path dump = fresh_dir("train");
    const JobConfig cfg = load_job_config("", {{"job.dump_folder", dump.string()},
                                               {"job.name", "sink"},
                                               {"model.flavor", "tiny_kitchen_sink"},
                                               {"model.final_softcap", "30"},
                                               {"training.local_batch_size", "8"},
                                               {"training.seq_len", "64"},
                                               {"training.steps", "120"},
                                               {"training.threads", "2"},
                                               {"optimizer.lr", "3e-3"},
                                               {"lr_scheduler.warmup_steps", "10"},
                                               {"validation.freq", "120"},
                                               {"validation.steps", "8"},
                                               {"metrics.log_freq", "20"},
                                               {"sample.max_new_tokens", "20"}});
    const TrainSummary s = train(cfg, nullptr);
    std::ifstream in(dump / "sink" / "metrics.jsonl");
    std::vector<double> losses;
    for (std::string line; std::getline(in, line);) {
        const json r = json::parse(line);
        if (r.contains("loss")) losses.push_back(r["loss"].get<double>());
    }
    std::printf("  tiny_kitchen_sink + final_softcap 30, losses at steps 1, 20, ..., 120:");
    for (double l : losses) std::printf(" %.3f", l);
    std::printf("; val %.3f, %.0f tok/s\n", s.final_val_loss, s.tok_per_s);
    ASSERT_EQ(losses.size(), 7u);               // steps 1, 20, ..., 120
    EXPECT_GT(losses.front(), 5.0);             // ~ln 258 = 5.55 at the start
    EXPECT_LT(losses[1], losses[0] - 2.0);      // step 20
    EXPECT_LT(losses.back(), losses[1] - 0.4);  // step 120
    // The plain tiny flavor reaches < 2.9 in the same job (train_test.cpp).
    EXPECT_LT(s.final_loss, 2.9);
    EXPECT_LT(s.final_val_loss, 2.9);
    EXPECT_EQ(s.sample.size(), 20u);
    // The resolved config keeps the switches, so the run folder rebuilds the same model.
    const JobConfig back = load_job_config((dump / "sink" / "config.toml").string(), {});
    EXPECT_EQ(back.model.final_softcap, 30.0);
    EXPECT_EQ(back.model.flavor, "tiny_kitchen_sink");
    fs::remove_all(dump);
}

}  // namespace
}  // namespace agpt
