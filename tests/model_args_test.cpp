#include <gtest/gtest.h>

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

TEST(ModelArgs, HeadsDivideDimAndKvHeadsDivideHeads) {
    for (const auto& f : agpt_flavors()) {
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

}  // namespace
}  // namespace agpt
