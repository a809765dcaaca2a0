#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/error.h"
#include "model/model_args.h"

namespace agpt {
namespace {

// Hidden widths from design.md's flavor table.
TEST(ModelArgs, FfnHiddenMatchesDesignTable) {
    const std::pair<const char*, int> expected[] = {
        {"debugmodel", 768}, {"2B", 11008},       {"7B", 11008},      {"8B", 14336},
        {"20B", 14336},      {"30B", 16384},      {"50B", 28672},     {"70B_wide", 25600},
        {"80B", 25600},      {"80B_wide", 39936}, {"80B_deep", 28672}};
    for (const auto& [name, hidden] : expected) {
        const Flavor* f = find_flavor(name);
        ASSERT_NE(f, nullptr) << name;
        EXPECT_EQ(f->args.ffn_hidden(), hidden) << name;
    }
}

// Every row of design.md's dense table, every column.
TEST(ModelArgs, EveryDesignTableFlavorHasItsExactDimensions) {
    struct Row {
        const char* name;
        int dim, layers, heads, kv, vocab, ffn;
        double theta;
    };
    const Row table[] = {
        {"debugmodel", 256, 6, 16, 16, 32000, 768, 5e5},
        {"2B", 2048, 12, 16, 4, 256128, 11008, 5e4},
        {"7B", 4096, 32, 32, 8, 32000, 11008, 1e4},
        {"8B", 4096, 32, 32, 8, 128256, 14336, 5e5},
        {"20B", 5120, 64, 40, 8, 256128, 14336, 5e5},
        {"30B", 6144, 64, 48, 8, 256128, 16384, 5e5},
        {"50B", 8192, 56, 64, 8, 256128, 28672, 5e5},
        {"70B_wide", 9216, 72, 72, 12, 256128, 25600, 5e5},
        {"80B", 9216, 84, 72, 12, 256128, 25600, 5e5},
        {"80B_wide", 10752, 48, 84, 12, 256128, 39936, 5e5},
        {"80B_deep", 7680, 96, 60, 12, 256128, 28672, 5e5},
    };
    for (const Row& r : table) {
        SCOPED_TRACE(r.name);
        const Flavor* f = find_flavor(r.name);
        ASSERT_NE(f, nullptr);
        const ModelArgs& a = f->args;
        EXPECT_EQ(a.dim, r.dim);
        EXPECT_EQ(a.n_layers, r.layers);
        EXPECT_EQ(a.n_heads, r.heads);
        EXPECT_EQ(a.n_kv_heads, r.kv);
        EXPECT_EQ(a.vocab_size, r.vocab);
        EXPECT_EQ(a.ffn_hidden(), r.ffn);
        EXPECT_EQ(a.rope_theta, r.theta);
        EXPECT_FALSE(a.has_switches());
    }
}

TEST(ModelArgs, HeadsDivideDimAndKvHeadsDivideHeads) {
    for (const auto& f : agpt_flavors()) {
        if (f.args.mla) continue;  // MLA's heads have their own sizes (moe_args_test.cpp)
        EXPECT_EQ(f.args.dim % f.args.n_heads, 0) << f.name;
        EXPECT_EQ(f.args.n_heads % f.args.n_kv_heads, 0) << f.name;
        EXPECT_EQ(f.args.head_dim() % 2, 0) << f.name;
    }
}

TEST(ModelArgs, ParamCountOfDebugModel) {
    const ModelArgs& a = find_flavor("debugmodel")->args;
    // embedding + head: 2·32000·256; per layer: qkv 256·768 + wo 256·256 + ffn 3·256·768 + 2 norms.
    const long per_layer = 256L * 768 + 256L * 256 + 3L * 256 * 768 + 2 * 256;
    EXPECT_EQ(a.num_params(), 2L * 32000 * 256 + 6 * per_layer + 256);
}

// 8B is Llama-3 8B's shape: 8,030,261,248 parameters (Meta's count).
TEST(ModelArgs, ParamCountOf8BIsLlama3s) {
    EXPECT_EQ(find_flavor("8B")->args.num_params(), 8030261248L);
}

TEST(ModelArgs, EveryBaseFlavorHasEverySuffixVariant) {
    int bases = 0;
    for (const auto& f : agpt_flavors()) {
        if (f.args.has_switches() || f.args.mla) continue;  // MLA/MoE flavors take no suffixes
        bases++;
        for (const FlavorSuffix& s : flavor_suffixes()) {
            const Flavor* v = find_flavor(f.name + s.suffix);
            ASSERT_NE(v, nullptr) << f.name << s.suffix;
            EXPECT_EQ(v->args.dim, f.args.dim);
            EXPECT_EQ(v->args.n_layers, f.args.n_layers);
            EXPECT_EQ(v->args.vocab_size, f.args.vocab_size);
            EXPECT_EQ(v->args.qk_norm, s.qk_norm);
            EXPECT_EQ(v->args.attn_softcap, s.attn_softcap);
            EXPECT_EQ(v->args.final_softcap, 0.0);
            EXPECT_EQ(v->args.ffn, s.ffn);
        }
    }
    EXPECT_EQ(bases, 15);  // design.md's 11 + tiny, small, medium, llama124m
    EXPECT_EQ(agpt_flavors().size(), 15u * 6 + moe_flavors().size());
    const ModelArgs& ks = find_flavor("debugmodel_kitchen_sink")->args;
    EXPECT_TRUE(ks.qk_norm);
    EXPECT_EQ(ks.attn_softcap, 30.0);
    EXPECT_EQ(ks.ffn, FfnType::relu2);
    EXPECT_EQ(find_flavor("2B_qknorm_softcap")->args.describe_switches(),
              "qk_norm, attn_softcap 30");
    EXPECT_EQ(find_flavor("debugmodel_qknorm_relu2"), nullptr);  // no such suffix
}

// ReLU²'s width is 3/2 of the SwiGLU width rounded up to multiple_of: two matrices of 3F/2 hold
// what three of F do.
TEST(ModelArgs, Relu2WidthKeepsTheFfnParameterCount) {
    EXPECT_EQ(find_flavor("debugmodel_relu2")->args.ffn_hidden(), 1280);  // 1152 -> 5·256
    EXPECT_EQ(find_flavor("8B_relu2")->args.ffn_hidden(), 21504);         // 14336·3/2 exactly
    EXPECT_EQ(find_flavor("tiny_relu2")->args.ffn_hidden(), 288);         // 192·3/2 = 9·32
    EXPECT_EQ(find_flavor("80B_relu2")->args.ffn_hidden(), 38912);        // 38400 -> 38·1024
    for (const auto& f : agpt_flavors()) {
        if (f.args.ffn != FfnType::relu2) continue;
        const ModelArgs& a = f.args;
        const long swiglu = 3L * a.dim * a.swiglu_hidden(), relu2 = 2L * a.dim * a.ffn_hidden();
        EXPECT_GE(relu2, swiglu) << f.name;
        EXPECT_LE(relu2, swiglu + 2L * a.dim * a.multiple_of) << f.name;
        EXPECT_EQ(a.ffn_in_dim(), a.ffn_hidden()) << f.name;
    }
    ModelArgs a = find_flavor("debugmodel")->args;
    EXPECT_EQ(a.ffn_in_dim(), 2 * 768);
    const long plain = a.num_params();
    a.ffn = FfnType::relu2;
    EXPECT_EQ(a.num_params(), plain + 6L * 256 * (2 * 1280 - 3 * 768));
    a.ffn = FfnType::swiglu;
    a.qk_norm = true;
    EXPECT_EQ(a.num_params(), plain + 6L * 2 * 16);  // q_norm and k_norm of head_dim per layer
}

TEST(ModelArgs, ResolveAppliesConfigSwitchesOnTopOfTheFlavor) {
    const ModelArgs plain = resolve_model_args("tiny", {});
    EXPECT_FALSE(plain.has_switches());
    EXPECT_EQ(plain.describe_switches(), "none");

    const ModelArgs on = resolve_model_args("tiny", {true, 50.0, 15.0, "relu2"});
    EXPECT_TRUE(on.qk_norm);
    EXPECT_EQ(on.attn_softcap, 50.0);
    EXPECT_EQ(on.final_softcap, 15.0);
    EXPECT_EQ(on.ffn, FfnType::relu2);
    EXPECT_EQ(on.describe_switches(), "qk_norm, attn_softcap 50, final_softcap 15, ffn relu2");

    // A suffix's switches stay on; a cap > 0 in the config replaces the suffix's 30.
    const ModelArgs sink = resolve_model_args("tiny_kitchen_sink", {false, 0.0, 0.0, "swiglu"});
    EXPECT_TRUE(sink.qk_norm);
    EXPECT_EQ(sink.attn_softcap, 30.0);
    EXPECT_EQ(sink.ffn, FfnType::relu2);
    EXPECT_EQ(resolve_model_args("tiny_softcap", {false, 20.0, 0.0, "swiglu"}).attn_softcap, 20.0);

    EXPECT_THROW(resolve_model_args("huge", {}), Error);
    EXPECT_THROW(resolve_model_args("tiny", {false, -1.0, 0.0, "swiglu"}), Error);
    EXPECT_THROW(resolve_model_args("tiny", {false, 0.0, NAN, "swiglu"}), Error);
    EXPECT_THROW(resolve_model_args("tiny", {false, 0.0, 0.0, "gelu"}), Error);
    EXPECT_EQ(parse_ffn_type("relu2"), FfnType::relu2);
    EXPECT_FALSE(parse_ffn_type("ReLU2").has_value());
}

}  // namespace
}  // namespace agpt
