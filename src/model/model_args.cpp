#include "model/model_args.h"

#include <cmath>

#include "core/error.h"

namespace agpt {

const char* ffn_type_name(FfnType t) {
    return t == FfnType::relu2 ? "relu2" : "swiglu";
}

std::optional<FfnType> parse_ffn_type(const std::string& s) {
    if (s == "swiglu") return FfnType::swiglu;
    if (s == "relu2") return FfnType::relu2;
    return std::nullopt;
}

int ModelArgs::swiglu_hidden() const {
    if (ffn_hidden_override > 0) return ffn_hidden_override;
    int hidden = 4 * dim;
    hidden = static_cast<int>(2 * hidden / 3);
    if (ffn_dim_multiplier > 0.0) hidden = static_cast<int>(ffn_dim_multiplier * hidden);
    return multiple_of * ((hidden + multiple_of - 1) / multiple_of);
}

int ModelArgs::ffn_hidden() const {
    const int swiglu = swiglu_hidden();
    if (ffn == FfnType::swiglu) return swiglu;
    const long relu2 = (3L * swiglu + 1) / 2;  // 3/2 of the SwiGLU width, rounded up
    return static_cast<int>(multiple_of * ((relu2 + multiple_of - 1) / multiple_of));
}

long ModelArgs::num_params() const {
    const long d = dim, f = ffn_hidden(), hd = head_dim();
    const long attn = d * (n_heads + 2L * n_kv_heads) * hd + static_cast<long>(n_heads) * hd * d;
    const long ffn_mats = ffn == FfnType::swiglu ? 3 : 2;
    const long ffn_params = ffn_mats * d * f;
    const long qk = qk_norm ? 2 * hd : 0;
    const long per_layer = attn + ffn_params + 2 * d + qk;
    return 2 * static_cast<long>(vocab_size) * d + n_layers * per_layer + d;
}

double ModelArgs::flops_per_token(int seq_len) const {
    const double n = static_cast<double>(num_params() - num_embedding_params());
    return 6.0 * n + 12.0 * n_layers * n_heads * head_dim() * static_cast<double>(seq_len);
}

std::string ModelArgs::describe_switches() const {
    std::string s;
    auto add = [&](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
    if (qk_norm) add("qk_norm");
    if (attn_softcap > 0) add(fmt::format("attn_softcap {:g}", attn_softcap));
    if (final_softcap > 0) add(fmt::format("final_softcap {:g}", final_softcap));
    if (ffn != FfnType::swiglu) add(fmt::format("ffn {}", ffn_type_name(ffn)));
    return s.empty() ? "none" : s;
}

namespace {

ModelArgs make(int dim, int layers, int heads, int kv, int vocab, double mult, int multiple_of,
               double theta, int hidden_override = 0) {
    ModelArgs a;
    a.dim = dim;
    a.n_layers = layers;
    a.n_heads = heads;
    a.n_kv_heads = kv;
    a.vocab_size = vocab;
    a.ffn_dim_multiplier = mult;
    a.multiple_of = multiple_of;
    a.rope_theta = theta;
    a.ffn_hidden_override = hidden_override;
    return a;
}

// The base flavors: design.md's dense table (dimensions checked in tests/model_args_test.cpp)
// and three small ones for CPUs.
std::vector<Flavor> base_flavors() {
    return {
        {"tiny", "2 layers, dim 64, GQA 4/2: tests", make(64, 2, 4, 2, 32000, 0, 32, 10000)},
        {"small", "4 layers, dim 192, 6 heads: fast CPU demos",
         make(192, 4, 6, 6, 32000, 0, 64, 10000)},
        {"medium", "6 layers, dim 384, 6 heads: CPU studies",
         make(384, 6, 6, 6, 32000, 0, 128, 10000)},
        {"debugmodel", "torchtitan's debug model", make(256, 6, 16, 16, 32000, 0, 256, 5e5)},
        {"2B", "AuroraGPT 2B", make(2048, 12, 16, 4, 256128, 2.0, 256, 5e4)},
        {"7B", "Llama-2 7B shape", make(4096, 32, 32, 8, 32000, 0, 256, 1e4)},
        {"8B", "Llama-3 8B shape", make(4096, 32, 32, 8, 128256, 1.3, 1024, 5e5)},
        {"20B", "AuroraGPT 20B", make(5120, 64, 40, 8, 256128, 0, 1024, 5e5)},
        {"30B", "AuroraGPT 30B", make(6144, 64, 48, 8, 256128, 0, 1024, 5e5)},
        {"50B", "AuroraGPT 50B", make(8192, 56, 64, 8, 256128, 1.3, 1024, 5e5)},
        {"70B_wide", "AuroraGPT 70B wide", make(9216, 72, 72, 12, 256128, 0, 1024, 5e5, 25600)},
        {"80B", "AuroraGPT 80B", make(9216, 84, 72, 12, 256128, 0, 1024, 5e5, 25600)},
        {"80B_wide", "AuroraGPT 80B wide", make(10752, 48, 84, 12, 256128, 0, 1024, 5e5, 39936)},
        {"80B_deep", "AuroraGPT 80B deep", make(7680, 96, 60, 12, 256128, 0, 1024, 5e5, 28672)},
    };
}

}  // namespace

const std::vector<FlavorSuffix>& flavor_suffixes() {
    static const std::vector<FlavorSuffix> suffixes = {
        {"_qknorm", "QK-norm", true, 0.0, FfnType::swiglu},
        {"_softcap", "attention-logit soft-cap 30", false, kFlavorSoftcap, FfnType::swiglu},
        {"_qknorm_softcap", "QK-norm, attention-logit soft-cap 30", true, kFlavorSoftcap,
         FfnType::swiglu},
        {"_relu2", "ReLU² FFN", false, 0.0, FfnType::relu2},
        {"_kitchen_sink", "QK-norm, attention-logit soft-cap 30, ReLU² FFN", true, kFlavorSoftcap,
         FfnType::relu2},
    };
    return suffixes;
}

const std::vector<Flavor>& agpt_flavors() {
    static const std::vector<Flavor> flavors = [] {
        std::vector<Flavor> out;
        for (const Flavor& base : base_flavors()) {
            out.push_back(base);
            for (const FlavorSuffix& s : flavor_suffixes()) {
                Flavor f = base;
                f.name += s.suffix;
                f.description += std::string(" + ") + s.description;
                f.args.qk_norm = s.qk_norm;
                f.args.attn_softcap = s.attn_softcap;
                f.args.ffn = s.ffn;
                out.push_back(std::move(f));
            }
        }
        return out;
    }();
    return flavors;
}

const Flavor* find_flavor(const std::string& name) {
    for (const auto& f : agpt_flavors())
        if (f.name == name) return &f;
    return nullptr;
}

ModelArgs resolve_model_args(const std::string& flavor, const ModelSwitches& sw) {
    const Flavor* f = find_flavor(flavor);
    if (f == nullptr) fail("model.flavor '{}': unknown flavor (see `agpt models`)", flavor);
    for (const auto& [key, value] : {std::pair{"model.attn_softcap", sw.attn_softcap},
                                     std::pair{"model.final_softcap", sw.final_softcap}})
        if (!(value >= 0.0) || !std::isfinite(value))
            fail("{} = {}: must be 0 (off) or a positive cap", key, value);
    const std::optional<FfnType> ffn = parse_ffn_type(sw.ffn);
    if (!ffn) fail("model.ffn = '{}': must be swiglu or relu2", sw.ffn);
    ModelArgs a = f->args;
    a.qk_norm = a.qk_norm || sw.qk_norm;
    if (sw.attn_softcap > 0) a.attn_softcap = sw.attn_softcap;
    if (sw.final_softcap > 0) a.final_softcap = sw.final_softcap;
    if (*ffn == FfnType::relu2) a.ffn = FfnType::relu2;
    return a;
}

}  // namespace agpt
