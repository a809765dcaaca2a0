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

long ModelArgs::attention_params() const {
    const long d = dim, h = n_heads;
    if (!mla) {
        const long hd = head_dim();
        return d * (h + 2L * n_kv_heads) * hd + h * hd * d + (qk_norm ? 2 * hd : 0);
    }
    const long qk = qk_nope_head_dim + qk_rope_head_dim, kvr = kv_lora_rank, qr = q_lora_rank;
    const long q = qr > 0 ? qr * d + qr + h * qk * qr : h * qk * d;
    const long kv = (kvr + qk_rope_head_dim) * d + kvr + h * (qk_nope_head_dim + v_head_dim) * kvr;
    return q + kv + d * h * v_head_dim;
}

long ModelArgs::moe_ffn_params() const {
    // Router, expert bias, routed experts, shared experts.
    return static_cast<long>(n_experts) * dim + n_experts + n_experts * expert_params() +
           n_shared_experts * expert_params();
}

long ModelArgs::num_params() const {
    const long d = dim, f = ffn_hidden();
    const long ffn_mats = ffn == FfnType::swiglu ? 3 : 2;
    const long dense_layer = attention_params() + ffn_mats * d * f + 2 * d;
    const long moe_layer = attention_params() + moe_ffn_params() + 2 * d;
    const long moe_layers = n_moe_layers();
    return 2 * static_cast<long>(vocab_size) * d + (n_layers - moe_layers) * dense_layer +
           moe_layers * moe_layer + d;
}

long ModelArgs::num_active_params() const {
    return num_params() - n_moe_layers() * static_cast<long>(n_experts - top_k) * expert_params();
}

double ModelArgs::flops_per_token(int seq_len) const {
    const double n = static_cast<double>(num_active_params() - num_embedding_params());
    const double hd = mla ? 0.5 * (qk_nope_head_dim + qk_rope_head_dim + v_head_dim) : head_dim();
    return 6.0 * n + 12.0 * n_layers * n_heads * hd * static_cast<double>(seq_len);
}

std::string ModelArgs::describe_switches() const {
    std::string s;
    auto add = [&](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
    if (qk_norm) add("qk_norm");
    if (attn_softcap > 0) add(fmt::format("attn_softcap {:g}", attn_softcap));
    if (final_softcap > 0) add(fmt::format("final_softcap {:g}", final_softcap));
    if (ffn != FfnType::swiglu) add(fmt::format("ffn {}", ffn_type_name(ffn)));
    if (mla)
        add(fmt::format("mla kv_lora {}{}{}", kv_lora_rank,
                        q_lora_rank > 0 ? fmt::format(" q_lora {}", q_lora_rank) : "",
                        max_seq_len > original_seq_len ? " yarn" : ""));
    if (is_moe())
        add(fmt::format("moe {}x{} top-{} + {} shared, {} router", n_experts, moe_hidden, top_k,
                        n_shared_experts, cpu::router_score_name(router.score)));
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
// and three small ones for CPUs, and the GPU benchmark's Llama-style 124M.
std::vector<Flavor> base_flavors() {
    return {
        {"tiny", "2 layers, dim 64, GQA 4/2: tests", make(64, 2, 4, 2, 32000, 0, 32, 10000)},
        {"small", "4 layers, dim 192, 6 heads: fast CPU demos",
         make(192, 4, 6, 6, 32000, 0, 64, 10000)},
        {"medium", "6 layers, dim 384, 6 heads: CPU studies",
         make(384, 6, 6, 6, 32000, 0, 128, 10000)},
        {"debugmodel", "torchtitan's debug model", make(256, 6, 16, 16, 32000, 0, 256, 5e5)},
        {"llama124m", "Llama-style GPT-2-small size: the GPU benchmark's",
         make(768, 12, 12, 4, 32000, 0, 256, 1e4)},
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
        for (const Flavor& f : moe_flavors()) out.push_back(f);
        return out;
    }();
    return flavors;
}

namespace {

// design.md's MoE flavors (DeepSeek-V3 style): MLA with kv_lora_rank 512, qk_nope 128, qk_rope 64,
// v_head 128, no q LoRA; YaRN as DeepSeek-V3 (max_seq_len 16384 over an original 4096, factor
// 40); softmax router; the first n_dense layers use the dense FFN width.
ModelArgs make_moe(int dim, int layers, int n_dense, int heads, int experts, int shared, int top_k,
                   int moe_ffn, int dense_ffn, int vocab = 256128) {
    ModelArgs a;
    a.dim = dim;
    a.n_layers = layers;
    a.n_heads = heads;
    a.n_kv_heads = heads;
    a.vocab_size = vocab;
    a.ffn_hidden_override = dense_ffn;
    a.rope_theta = 10000.0;
    a.max_seq_len = 16384;
    a.mla = true;
    a.kv_lora_rank = 512;
    a.qk_nope_head_dim = 128;
    a.qk_rope_head_dim = 64;
    a.v_head_dim = 128;
    a.n_experts = experts;
    a.n_shared_experts = shared;
    a.top_k = top_k;
    a.moe_hidden = moe_ffn;
    a.n_dense_layers = n_dense;
    return a;
}

// A CPU-sized MLA model: MoE with the given experts, or (experts = 0) its dense counterpart whose
// FFN has the width of the top_k + shared experts a token uses, so that both have the same
// active parameters but for the router.
ModelArgs make_cpu_mla(int experts) {
    ModelArgs a = make_moe(128, 4, 1, 8, experts, 1, 2, 128, 384, 32000);
    a.max_seq_len = a.original_seq_len;  // no YaRN at these lengths
    a.kv_lora_rank = 64;
    a.qk_nope_head_dim = 16;
    a.qk_rope_head_dim = 8;
    a.v_head_dim = 16;
    if (experts == 0) {
        a.n_shared_experts = a.top_k = a.moe_hidden = a.n_dense_layers = 0;
    }
    return a;
}

// The smallest model with every MLA/MoE feature on (q LoRA, YaRN, sigmoid router with
// normalisation and scale): PyTorch reference tests.
ModelArgs make_moe_tiny() {
    ModelArgs a = make_moe(32, 3, 1, 4, 4, 1, 2, 16, 48, 32000);
    a.max_seq_len = 64;
    a.original_seq_len = 16;
    a.rope_factor = 4.0;
    a.q_lora_rank = 16;
    a.kv_lora_rank = 16;
    a.qk_nope_head_dim = 8;
    a.qk_rope_head_dim = 4;
    a.v_head_dim = 6;
    a.router = {cpu::RouterScore::sigmoid, true, 2.5};
    return a;
}

}  // namespace

const std::vector<Flavor>& moe_flavors() {
    static const std::vector<Flavor> flavors = {
        {"moe_debugmodel", "DeepSeek-V3-style debug model, 8 experts + 2 shared, top-3",
         make_moe(256, 6, 1, 16, 8, 2, 3, 256, 1024)},
        {"moe_500M", "DeepSeek-V3-style, 16 experts + 2 shared, top-3",
         make_moe(512, 12, 1, 16, 16, 2, 3, 512, 2048)},
        {"moe_2B", "DeepSeek-V3-style, 24 experts + 2 shared, top-3",
         make_moe(1024, 18, 1, 16, 24, 2, 3, 1024, 4096)},
        {"moe_7B", "DeepSeek-V3-style, 36 experts + 2 shared, top-3",
         make_moe(2048, 24, 1, 24, 36, 2, 3, 1280, 8192)},
        {"moe_16B", "DeepSeek-V3-style, 64 experts + 2 shared, top-6",
         make_moe(2048, 27, 1, 16, 64, 2, 6, 1408, 10944)},
        {"moe_debug", "MLA + MoE for CPUs: dim 128, 4 layers, 8 experts + 1 shared, top-2",
         make_cpu_mla(8)},
        {"moe_debug_dense", "moe_debug's dense counterpart (same active parameters but the router)",
         make_cpu_mla(0)},
        {"moe_tiny", "MLA (q LoRA, YaRN) + MoE (sigmoid router, normalised, scale 2.5): tests",
         make_moe_tiny()},
    };
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
    if (!(sw.aux_loss_alpha >= 0.0) || !std::isfinite(sw.aux_loss_alpha))
        fail("model.aux_loss_alpha = {}: must be 0 (off) or a positive weight", sw.aux_loss_alpha);
    if (sw.aux_loss_alpha > 0) {
        if (!a.is_moe())
            fail("model.aux_loss_alpha = {}: flavor '{}' has no experts", sw.aux_loss_alpha,
                 flavor);
        a.aux_loss_alpha = sw.aux_loss_alpha;
    }
    return a;
}

}  // namespace agpt
