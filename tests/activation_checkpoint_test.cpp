// Activation checkpointing (ActivationCheckpoint::full) against the model that keeps everything:
// the same weights and batches give bit-identical losses, gradients, MoE load counts and aux
// losses, with less activation memory.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "model/model_zoo.h"
#include "model/transformer.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

// Norm gains and expert biases away from their initial 1 and 0, so that every product and the
// biased expert choice are exercised.
void perturb(Transformer& m, uint64_t seed) {
    Rng rng(seed);
    for (const ParamView& v : m.param_views()) {
        if (v.role != "norm" && v.role != "expert_bias") continue;
        float* p = m.params().data() + v.offset;
        for (std::size_t i = 0; i < v.numel(); i++) p[i] += static_cast<float>(0.3 * rng.normal());
    }
}

struct Case {
    std::string name;
    std::string flavor;
    ModelSwitches switches;
};

void expect_full_equals_none(const Case& c) {
    SCOPED_TRACE(c.name);
    ModelArgs a = resolve_model_args(c.flavor, c.switches);
    a.vocab_size = 97;
    const int B = 2, T = 12;
    Transformer none(a, B, T, ActivationCheckpoint::none),
        full(a, B, T, ActivationCheckpoint::full);
    for (Transformer* m : {&none, &full}) {
        m->init_weights("agpt", 7);
        perturb(*m, 8);
        m->zero_grad();
    }
    ASSERT_EQ(none.params(), full.params());
    Rng rng(9);
    // Two micro-batches accumulate, the second shorter than the allocation.
    for (const int T_step : {T, T - 4}) {
        std::vector<int32_t> tokens(B * T_step), targets(B * T_step);
        for (auto& t : tokens) t = static_cast<int32_t>(rng.below(97));
        for (auto& t : targets) t = static_cast<int32_t>(rng.below(97));
        targets[3] = -1;
        const double scale = 1.0 / (B * T_step);
        const double loss_none =
            none.forward_backward(tokens.data(), targets.data(), B, T_step, scale);
        const double loss_full =
            full.forward_backward(tokens.data(), targets.data(), B, T_step, scale);
        EXPECT_EQ(loss_none, loss_full);
        EXPECT_EQ(none.moe_aux_loss(), full.moe_aux_loss());
    }
    ASSERT_EQ(none.grads().size(), full.grads().size());
    EXPECT_EQ(
        std::memcmp(none.grads().data(), full.grads().data(), none.grads().size() * sizeof(float)),
        0);
    for (const ParamView& v : none.param_views()) {
        const float* gn = none.grads().data() + v.offset;
        const float* gf = full.grads().data() + v.offset;
        bool any = false;
        for (std::size_t i = 0; i < v.numel(); i++) any = any || gn[i] != 0.0f;
        EXPECT_TRUE(any || v.role == "expert_bias") << v.name << " got no gradient";
        for (std::size_t i = 0; i < v.numel(); i++)
            if (gn[i] != gf[i]) {
                ADD_FAILURE() << v.name << "[" << i << "]: " << gn[i] << " vs " << gf[i];
                break;
            }
    }
    // The recompute in backward neither counts the routing again nor loses a layer's count.
    ASSERT_EQ(none.moe_layer_ids(), full.moe_layer_ids());
    for (int layer : none.moe_layer_ids()) {
        EXPECT_EQ(none.moe_layer(layer).tokens_per_expert(),
                  full.moe_layer(layer).tokens_per_expert())
            << "layer " << layer;
        double total = 0;
        for (double n : full.moe_layer(layer).tokens_per_expert()) total += n;
        EXPECT_EQ(total, static_cast<double>(B * (2 * T - 4) * a.top_k)) << "layer " << layer;
    }
    // Forward-only paths read the same final activations.
    std::vector<float> logits_none(static_cast<std::size_t>(B) * T * 97), logits_full = logits_none;
    std::vector<int32_t> tokens(B * T);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(97));
    none.forward_logits(tokens.data(), B, T, logits_none.data());
    full.forward_logits(tokens.data(), B, T, logits_full.data());
    EXPECT_EQ(logits_none, logits_full);

    EXPECT_LT(full.activation_bytes(), none.activation_bytes());
}

TEST(ActivationCheckpoint, DenseWithEverySwitchIsBitIdentical) {
    ModelSwitches s;
    s.qk_norm = true;
    s.attn_softcap = 30;
    s.final_softcap = 20;
    s.ffn = "relu2";
    expect_full_equals_none({"tiny + qk_norm, softcaps, relu2", "tiny", s});
    expect_full_equals_none({"tiny", "tiny", {}});
}

TEST(ActivationCheckpoint, MlaMoeWithAuxLossIsBitIdentical) {
    ModelSwitches s;
    s.aux_loss_alpha = 0.1;
    expect_full_equals_none({"moe_tiny + aux loss (sigmoid router, q LoRA)", "moe_tiny", s});
    expect_full_equals_none({"moe_debug (softmax router)", "moe_debug", {}});
}

TEST(ActivationCheckpoint, MlaDenseIsBitIdentical) {
    expect_full_equals_none({"moe_debug_dense", "moe_debug_dense", {}});
}

// Saved activations: every layer's working set (none) against each layer's input plus one
// working set (full); the difference is (layers - 1) working sets less the inputs.
TEST(ActivationCheckpoint, MemoryDropsWithTheLayerCount) {
    ModelArgs a = resolve_model_args("small", {});
    a.vocab_size = 258;
    const int B = 4, T = 64;
    std::size_t saved_per_extra_layer[2] = {0, 0};
    for (int layers : {4, 8}) {
        a.n_layers = layers;
        const Transformer none(a, B, T, ActivationCheckpoint::none);
        const Transformer full(a, B, T, ActivationCheckpoint::full);
        (layers == 4 ? saved_per_extra_layer[0] : saved_per_extra_layer[1]) =
            none.activation_bytes() - full.activation_bytes();
    }
    // Four more layers add four working sets to none and four inputs (N·D) to full.
    const std::size_t N = static_cast<std::size_t>(B) * T, D = a.dim;
    EXPECT_GT(saved_per_extra_layer[1], saved_per_extra_layer[0]);
    EXPECT_EQ((saved_per_extra_layer[1] - saved_per_extra_layer[0]) % 4, 0u);
    const std::size_t working_set = (saved_per_extra_layer[1] - saved_per_extra_layer[0]) / 4;
    EXPECT_GT(working_set, 10 * N * D * sizeof(float) / 2);  // ≥ 5 N·D tensors per layer
}

TEST(ActivationCheckpoint, ConfigRefusesUnknownModesAndGpt2) {
    auto error_of = [](const ConfigOverrides& o) {
        try {
            load_job_config("", o);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    const std::string selective = error_of({{"activation_checkpoint.mode", "selective"}});
    EXPECT_NE(selective.find("activation_checkpoint.mode"), std::string::npos) << selective;
    EXPECT_NE(selective.find("none, full"), std::string::npos) << selective;
    const std::string gpt2 = error_of({{"model.name", "gpt2"},
                                       {"model.flavor", "gpt2_tiny"},
                                       {"activation_checkpoint.mode", "full"}});
    EXPECT_NE(gpt2.find("activation_checkpoint.mode"), std::string::npos) << gpt2;
    EXPECT_NE(gpt2.find("agpt only"), std::string::npos) << gpt2;
    EXPECT_EQ(
        load_job_config("", {{"activation_checkpoint.mode", "full"}}).activation_checkpoint.mode,
        "full");
    EXPECT_THROW(
        make_language_model("gpt2", "gpt2_tiny", {}, 258, 1, 8, ActivationCheckpoint::full), Error);
}

// The trainer's model factory passes the mode through.
TEST(ActivationCheckpoint, JobModelFollowsTheConfig) {
    for (const char* mode : {"none", "full"}) {
        const JobConfig cfg =
            load_job_config("", {{"activation_checkpoint.mode", mode}, {"model.flavor", "tiny"}});
        const auto model = make_job_model(cfg, 258, 2, 16);
        ModelArgs a = resolve_model_args("tiny", {});
        a.vocab_size = 258;
        const Transformer expected(a, 2, 16, activation_checkpoint_from(mode));
        EXPECT_EQ(model->activation_bytes(), expected.activation_bytes()) << mode;
    }
    EXPECT_THROW(activation_checkpoint_from("selective"), Error);
}

}  // namespace
}  // namespace agpt
