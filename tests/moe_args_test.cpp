// The MLA/MoE flavors (model_args.h): design.md's MoE table with its exact dimensions, the
// parameter counts (total and active) against hand counts, the model's flat buffer against
// those counts, and the training-only load counting and bias update of the model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

TEST(MoeFlavors, DesignTableDimensionsAreExact) {
    struct Row {
        const char* name;
        int dim, layers, dense, heads, experts, shared, top_k, moe_ffn, dense_ffn;
    };
    const std::vector<Row> table = {
        {"moe_debugmodel", 256, 6, 1, 16, 8, 2, 3, 256, 1024},
        {"moe_500M", 512, 12, 1, 16, 16, 2, 3, 512, 2048},
        {"moe_2B", 1024, 18, 1, 16, 24, 2, 3, 1024, 4096},
        {"moe_7B", 2048, 24, 1, 24, 36, 2, 3, 1280, 8192},
        {"moe_16B", 2048, 27, 1, 16, 64, 2, 6, 1408, 10944},
    };
    for (const Row& r : table) {
        SCOPED_TRACE(r.name);
        const Flavor* f = find_flavor(r.name);
        ASSERT_NE(f, nullptr);
        const ModelArgs& a = f->args;
        EXPECT_EQ(a.dim, r.dim);
        EXPECT_EQ(a.n_layers, r.layers);
        EXPECT_EQ(a.n_dense_layers, r.dense);
        EXPECT_EQ(a.n_heads, r.heads);
        EXPECT_EQ(a.n_experts, r.experts);
        EXPECT_EQ(a.n_shared_experts, r.shared);
        EXPECT_EQ(a.top_k, r.top_k);
        EXPECT_EQ(a.moe_hidden, r.moe_ffn);
        EXPECT_EQ(a.ffn_hidden(), r.dense_ffn);
        EXPECT_EQ(a.vocab_size, 256128);
        EXPECT_TRUE(a.mla);
        EXPECT_EQ(a.kv_lora_rank, 512);
        EXPECT_EQ(a.qk_nope_head_dim, 128);
        EXPECT_EQ(a.qk_rope_head_dim, 64);
        EXPECT_EQ(a.v_head_dim, 128);
        EXPECT_EQ(a.router.score, cpu::RouterScore::softmax);
        EXPECT_GT(a.max_seq_len, a.original_seq_len);  // YaRN
        EXPECT_EQ(a.load_balance_coeff, 1e-3);
        EXPECT_LT(a.num_active_params(), a.num_params());
    }
}

TEST(MoeFlavors, ParamCountsOfMoeDebugmodelByHand) {
    const ModelArgs& a = find_flavor("moe_debugmodel")->args;
    // MLA per layer: wq 16·192·256, wkv_a (512+64)·256, kv_norm 512, wkv_b 16·(128+128)·512,
    // wo 256·16·128.
    const long attn = 16L * 192 * 256 + 576L * 256 + 512 + 16L * 256 * 512 + 256L * 16 * 128;
    const long dense_ffn = 3L * 256 * 1024;
    const long expert = 3L * 256 * 256;
    // Router 8·256, expert bias 8, 8 routed and 2 shared experts.
    const long moe_ffn = 8L * 256 + 8 + 8 * expert + 2 * expert;
    const long norms = 2L * 256;
    const long total = 2L * 256128 * 256 + 256 + 6 * (attn + norms) + dense_ffn + 5 * moe_ffn;
    EXPECT_EQ(a.num_params(), total);
    EXPECT_EQ(a.num_active_params(), total - 5 * (8 - 3) * expert);
    // 6·(active − embedding) + 12·L·H·((192 + 128)/2)·T
    EXPECT_DOUBLE_EQ(a.flops_per_token(512),
                     6.0 * static_cast<double>(a.num_active_params() - 256128L * 256) +
                         12.0 * 6 * 16 * 160 * 512);
}

TEST(MoeFlavors, DebugPairHasTheSameActiveParametersButTheRouter) {
    const ModelArgs& moe = find_flavor("moe_debug")->args;
    const ModelArgs& dense = find_flavor("moe_debug_dense")->args;
    EXPECT_FALSE(dense.is_moe());
    EXPECT_TRUE(dense.mla);
    EXPECT_EQ(dense.ffn_hidden(), (moe.top_k + moe.n_shared_experts) * moe.moe_hidden);
    const long router =
        moe.n_moe_layers() * (static_cast<long>(moe.n_experts) * moe.dim + moe.n_experts);
    EXPECT_EQ(moe.num_active_params(), dense.num_params() + router);
    // The experts a token skips are the difference.
    EXPECT_EQ(
        moe.num_params() - moe.num_active_params(),
        moe.n_moe_layers() * static_cast<long>(moe.n_experts - moe.top_k) * moe.expert_params());
}

TEST(MoeFlavors, ModelBuffersHoldExactlyTheCountedParameters) {
    for (const std::string name : {"moe_tiny", "moe_debug", "moe_debug_dense"}) {
        SCOPED_TRACE(name);
        const ModelArgs& a = find_flavor(name)->args;
        Transformer model(a, 1, 8);
        EXPECT_EQ(static_cast<long>(model.params().size()), a.num_params());
        EXPECT_EQ(static_cast<int>(model.moe_layer_ids().size()), a.n_moe_layers());
        for (const auto& v : model.param_views())
            if (v.role == "expert_bias") {
                EXPECT_EQ(v.shape, std::vector<int>{a.n_experts});
            }
    }
}

TEST(MoeModel, OnlyTrainingForwardsCountLoadAndTheBiasStepUsesIt) {
    ModelArgs a = find_flavor("moe_tiny")->args;
    a.vocab_size = 97;
    const int B = 2, T = 12;
    Transformer model(a, B, T);
    model.init_weights("agpt", 5);
    Rng rng(3);
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(97));
    for (auto& t : targets) t = static_cast<int32_t>(rng.below(97));
    const int layer = model.moe_layer_ids().front();
    auto total_load = [&]() {
        const auto& load = model.moe_layer(layer).tokens_per_expert();
        return std::accumulate(load.begin(), load.end(), 0.0);
    };
    model.forward_loss(tokens.data(), targets.data(), B, T);
    EXPECT_EQ(total_load(), 0.0);  // evaluation does not count
    model.zero_grad();
    model.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / (B * T));
    EXPECT_EQ(total_load(), static_cast<double>(B * T * a.top_k));
    const auto load = model.moe_layer(layer).tokens_per_expert();
    const ParamView& bias_view = model.view("layers." + std::to_string(layer) + ".moe.expert_bias");
    const std::vector<float> before(model.params().begin() + bias_view.offset,
                                    model.params().begin() + bias_view.offset + a.n_experts);
    EXPECT_EQ(model.grads()[bias_view.offset], 0.0f);  // no gradient reaches the bias
    model.update_expert_bias(1e-3);
    EXPECT_EQ(total_load(), 0.0);  // reset for the next step
    const double mean = static_cast<double>(B * T * a.top_k) / a.n_experts;
    for (int e = 0; e < a.n_experts; e++) {
        const float after = model.params()[bias_view.offset + e];
        if (load[e] > mean) {
            EXPECT_LT(after, before[e]) << e;
        } else if (load[e] < mean) {
            EXPECT_GT(after, before[e]) << e;
        }
    }
}

// The balance loss reaches every MoE layer of the model and moves the router's gradient only.
TEST(MoeModel, AuxLossIsReportedAndChangesOnlyTheRouterSideGradients) {
    ModelArgs a = find_flavor("moe_tiny")->args;
    a.vocab_size = 61;
    const int B = 2, T = 8;
    Rng rng(4);
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(61));
    for (auto& t : targets) t = static_cast<int32_t>(rng.below(61));
    auto run = [&](double alpha, double* aux) {
        ModelArgs m = a;
        m.aux_loss_alpha = alpha;
        Transformer model(m, B, T);
        model.init_weights("agpt", 9);
        model.zero_grad();
        model.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / (B * T));
        *aux = model.moe_aux_loss();
        return std::vector<float>(model.grads().begin(), model.grads().end());
    };
    double aux_off = -1, aux_on = -1;
    const std::vector<float> off = run(0.0, &aux_off), on = run(0.1, &aux_on);
    EXPECT_EQ(aux_off, 0.0);
    // Two MoE layers, each α·Σ f·P ≈ α (near-uniform routing at init).
    EXPECT_GT(aux_on, 0.1);
    EXPECT_LT(aux_on, 0.1 * a.n_moe_layers() * a.n_experts);
    Transformer views(a, 1, 1);
    const ParamView& router = views.view("layers.2.moe.router.gate.weight");
    const ParamView& head = views.view("output.weight");
    double router_moved = 0, head_moved = 0;
    for (std::size_t i = 0; i < router.numel(); i++)
        router_moved =
            std::max(router_moved,
                     static_cast<double>(std::abs(on[router.offset + i] - off[router.offset + i])));
    for (std::size_t i = 0; i < head.numel(); i++)
        head_moved = std::max(
            head_moved, static_cast<double>(std::abs(on[head.offset + i] - off[head.offset + i])));
    EXPECT_GT(router_moved, 1e-4);
    EXPECT_EQ(head_moved, 0.0);  // the head sits after every MoE layer
}

TEST(MoeConfig, AuxLossAlphaNeedsAMoeFlavorAndReachesTheModel) {
    const JobConfig cfg =
        load_job_config("", {{"model.flavor", "moe_debug"}, {"model.aux_loss_alpha", "0.001"}});
    EXPECT_EQ(resolve_model_args(cfg.model.flavor, cfg.model.switches()).aux_loss_alpha, 0.001);
    EXPECT_EQ(find_flavor("moe_debug")->args.aux_loss_alpha, 0.0);  // off unless asked
    try {
        load_job_config("", {{"model.flavor", "tiny"}, {"model.aux_loss_alpha", "0.01"}});
        FAIL() << "a dense flavor with an aux loss was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model.aux_loss_alpha"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(
        load_job_config("", {{"model.flavor", "moe_debug"}, {"model.aux_loss_alpha", "-1"}}),
        Error);
}

// A MoE run stopped after its step-6 checkpoint and resumed ends bit-identical to the
// uninterrupted one: the checkpoint carries the expert biases (which the balancing rule moved)
// under DeepSeek-V3's names; Muon routes the stacked experts and the router to its AdamW.
TEST(MoeTrain, ResumedRunEqualsUninterruptedBitForBit) {
    namespace fs = std::filesystem;
    const fs::path dump = fs::temp_directory_path() / "agpt_moe_resume_test";
    fs::remove_all(dump);
    auto job = [&](const std::string& name) {
        return load_job_config("", {{"job.dump_folder", dump.string()},
                                    {"job.name", name},
                                    {"model.flavor", "moe_tiny"},
                                    {"model.aux_loss_alpha", "0.01"},
                                    {"training.local_batch_size", "2"},
                                    {"training.global_batch_size", "4"},
                                    {"training.seq_len", "16"},
                                    {"training.steps", "12"},
                                    {"training.threads", "1"},
                                    {"optimizer.name", "Muon"},
                                    {"metrics.log_freq", "5"},
                                    {"validation.freq", "5"},
                                    {"validation.steps", "2"},
                                    {"checkpoint.enable", "true"},
                                    {"checkpoint.interval", "6"},
                                    {"sample.max_new_tokens", "0"}});
    };
    train(job("full"), nullptr);
    train(job("cut"), nullptr);
    fs::remove_all(dump / "cut" / "checkpoints" / "step-12");
    train(job("cut"), nullptr);
    auto bytes = [](const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
        const std::string a = bytes(dump / "full" / "checkpoints" / "step-12" / file);
        const std::string b = bytes(dump / "cut" / "checkpoints" / "step-12" / file);
        ASSERT_FALSE(a.empty()) << file;
        EXPECT_TRUE(a == b) << file << " differs after resuming";
    }
    const SafetensorsFile st(
        (dump / "full" / "checkpoints" / "step-12" / "model.safetensors").string());
    const std::vector<float> bias =
        st.get<float>("model.layers.1.mlp.gate.e_score_correction_bias");
    EXPECT_TRUE(std::any_of(bias.begin(), bias.end(), [](float b) { return b != 0.0f; }));
    EXPECT_TRUE(st.contains("model.layers.2.mlp.experts.gate_proj"));
    fs::remove_all(dump);
}

// moe_debug on the bundled corpus: the loss falls as the dense models' does, and every logged
// step carries each MoE layer's per-expert load (all 2·B·T assignments) and its imbalance.
TEST(MoeTrain, MoeDebugLossFallsOnBundledCorpusAndLoadIsLogged) {
    namespace fs = std::filesystem;
    const fs::path dump = fs::temp_directory_path() / "agpt_moe_train_test";
    fs::remove_all(dump);
    const int B = 8, T = 64;
    const JobConfig cfg = load_job_config("", {{"job.dump_folder", dump.string()},
                                               {"job.name", "moe"},
                                               {"model.flavor", "moe_debug"},
                                               {"training.local_batch_size", std::to_string(B)},
                                               {"training.seq_len", std::to_string(T)},
                                               {"training.steps", "100"},
                                               {"training.threads", "1"},
                                               {"optimizer.lr", "3e-3"},
                                               {"lr_scheduler.warmup_steps", "10"},
                                               {"validation.freq", "100"},
                                               {"validation.steps", "8"},
                                               {"metrics.log_freq", "20"},
                                               {"sample.max_new_tokens", "20"}});
    const TrainSummary s = train(cfg, nullptr);
    const ModelArgs& a = find_flavor("moe_debug")->args;
    std::ifstream in(dump / "moe" / "metrics.jsonl");
    std::vector<double> losses;
    for (std::string line; std::getline(in, line);) {
        const nlohmann::json r = nlohmann::json::parse(line);
        if (!r.contains("loss")) continue;
        losses.push_back(r["loss"].get<double>());
        const auto& load = r.at("moe_tokens_per_expert");
        ASSERT_EQ(static_cast<int>(load.size()), a.n_moe_layers());
        for (const auto& layer : load) {
            ASSERT_EQ(static_cast<int>(layer.size()), a.n_experts);
            double total = 0;
            for (const auto& t : layer) total += t.get<double>();
            EXPECT_EQ(total, static_cast<double>(B) * T * a.top_k);
        }
        EXPECT_GE(r.at("moe_imbalance").get<double>(), 1.0);
        EXPECT_GE(r.at("moe_imbalance_max").get<double>(), r.at("moe_imbalance").get<double>());
    }
    std::printf("  moe_debug losses at steps 1, 20, ..., 100:");
    for (double l : losses) std::printf(" %.3f", l);
    std::printf("; val %.3f, %.0f tok/s\n", s.final_val_loss, s.tok_per_s);
    ASSERT_EQ(losses.size(), 6u);
    EXPECT_GT(losses.front(), 5.0);  // ~ln 258 = 5.55 at the start
    EXPECT_LT(losses[1], losses[0] - 2.0);
    EXPECT_LT(losses.back(), losses[1] - 0.2);
    EXPECT_LT(s.final_loss, 2.8);
    EXPECT_LT(s.final_val_loss, 2.8);
    EXPECT_EQ(s.sample.size(), 20u);
    fs::remove_all(dump);
}

}  // namespace
}  // namespace agpt
