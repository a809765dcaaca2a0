#include "model/hf_llama_io.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/hf_llama.h"

namespace agpt {

namespace fs = std::filesystem;
using nlohmann::json;

void check_hf_expressible(const ModelArgs& a) {
    std::string what;
    if (a.attn_softcap > 0)
        what = fmt::format("attention-logit soft-capping (attn_softcap {:g})", a.attn_softcap);
    else if (a.final_softcap > 0)
        what = fmt::format("final-logit soft-capping (final_softcap {:g})", a.final_softcap);
    else if (a.ffn != FfnType::swiglu)
        what = fmt::format("the {} FFN", ffn_type_name(a.ffn));
    else if (a.mla || a.is_moe())
        what = "multi-head latent attention / mixture of experts (DeepSeek-V3 style)";
    if (!what.empty())
        fail(
            "this model uses {}, which neither Hugging Face's Llama nor its Qwen3 format can "
            "express (a reader would build a different model); only plain and QK-norm models "
            "export. Keep the agpt checkpoint, or train a flavor without that switch",
            what);
}

std::string hf_llama_config_json(const ModelArgs& a, std::optional<int32_t> bos,
                                 std::optional<int32_t> eos) {
    check_hf_expressible(a);
    // The keys LlamaConfig reads, with the values that make transformers build exactly the
    // agpt block; the ones that merely restate LlamaConfig defaults are written anyway so that
    // a reader does not depend on a transformers version's defaults.
    json j = {
        {"architectures", {a.qk_norm ? "Qwen3ForCausalLM" : "LlamaForCausalLM"}},
        {"model_type", a.qk_norm ? "qwen3" : "llama"},
        {"hidden_size", a.dim},
        {"intermediate_size", a.ffn_hidden()},
        {"num_hidden_layers", a.n_layers},
        {"num_attention_heads", a.n_heads},
        {"num_key_value_heads", a.n_kv_heads},
        {"head_dim", a.head_dim()},
        {"vocab_size", a.vocab_size},
        {"rms_norm_eps", a.norm_eps},
        {"rope_theta", a.rope_theta},
        {"rope_scaling", nullptr},
        {"max_position_embeddings", a.max_seq_len},
        {"tie_word_embeddings", false},
        {"torch_dtype", "float32"},
        {"hidden_act", "silu"},
        {"attention_bias", false},
        {"attention_dropout", 0.0},
        {"mlp_bias", false},
        {"pretraining_tp", 1},
        {"initializer_range", 0.02},
        {"use_cache", true},
    };
    if (a.qk_norm) {
        // Qwen3 = this block + per-head RMSNorm on q and k before RoPE (q_norm, k_norm), eps
        // rms_norm_eps; its sliding window must stay off. pretraining_tp is Llama's only.
        j.erase("pretraining_tp");
        j.erase("mlp_bias");
        j["use_sliding_window"] = false;
        j["sliding_window"] = nullptr;
        j["max_window_layers"] = a.n_layers;
    }
    j["bos_token_id"] = bos ? json(*bos) : json(nullptr);
    j["eos_token_id"] = eos ? json(*eos) : json(nullptr);
    return j.dump(2) + "\n";
}

namespace {

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) fail("{}: cannot open file", p.string());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class ConfigReader {
  public:
    ConfigReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

    const json* find(const char* key) const {
        auto it = j_.find(key);
        return it == j_.end() || it->is_null() ? nullptr : &*it;
    }
    int integer(const char* key, std::optional<int> fallback = std::nullopt) const {
        const json* v = find(key);
        if (!v) {
            if (fallback) return *fallback;
            fail("{}: missing key '{}'", path_, key);
        }
        if (!v->is_number_integer() || v->get<long long>() <= 0 ||
            v->get<long long>() > 1'000'000'000)
            fail("{}: key '{}' must be a positive integer, not {}", path_, key, v->dump());
        return v->get<int>();
    }
    double number(const char* key, std::optional<double> fallback = std::nullopt) const {
        const json* v = find(key);
        if (!v) {
            if (fallback) return *fallback;
            fail("{}: missing key '{}'", path_, key);
        }
        if (!v->is_number() || !(v->get<double>() > 0.0) || !std::isfinite(v->get<double>()))
            fail("{}: key '{}' must be a positive number, not {}", path_, key, v->dump());
        return v->get<double>();
    }
    bool boolean(const char* key, bool fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean())
            fail("{}: key '{}' must be true or false, not {}", path_, key, v->dump());
        return v->get<bool>();
    }
    std::optional<int32_t> token_id(const char* key) const {
        const json* v = find(key);
        if (!v) return std::nullopt;
        // A list of ids (several end-of-sequence tokens) keeps its first one.
        const json& first = v->is_array() && !v->empty() ? (*v)[0] : *v;
        if (!first.is_number_integer() || first.get<long long>() < 0)
            fail("{}: key '{}' must be a token id, not {}", path_, key, v->dump());
        return static_cast<int32_t>(first.get<long long>());
    }

  private:
    const json& j_;
    std::string path_;
};

}  // namespace

HfLlamaConfig read_hf_llama_config(const std::string& path) {
    json j;
    try {
        j = json::parse(read_text(path));
    } catch (const json::exception& e) {
        fail("{}: not valid JSON ({})", path, e.what());
    }
    if (!j.is_object()) fail("{}: not a JSON object", path);
    const ConfigReader r(j, path);
    const json* type = r.find("model_type");
    if (!type) fail("{}: missing key 'model_type'", path);
    if (!type->is_string() || (*type != "llama" && *type != "qwen3"))
        fail(
            "{}: model_type {} is not \"llama\" or \"qwen3\"; only Llama models (and Qwen3, "
            "a Llama with QK-norm) can be imported",
            path, type->dump());
    const bool qwen3 = *type == "qwen3";
    if (qwen3 && r.boolean("use_sliding_window", false))
        fail(
            "{}: use_sliding_window = true is not supported (agpt attends to every earlier "
            "position)",
            path);
    if (const json* act = r.find("hidden_act"); act && *act != "silu")
        fail("{}: hidden_act {} is not supported (agpt's FFN is SwiGLU: \"silu\")", path,
             act->dump());
    if (r.find("rope_scaling"))
        fail(
            "{}: rope_scaling {} is not supported (agpt applies plain RoPE); remove it only if "
            "the model was trained without scaling",
            path, r.find("rope_scaling")->dump());
    for (const char* bias : {"attention_bias", "mlp_bias"})
        if (r.boolean(bias, false))
            fail("{}: {} = true is not supported (agpt has no biases)", path, bias);

    HfLlamaConfig c;
    ModelArgs& a = c.args;
    a.qk_norm = qwen3;
    a.dim = r.integer("hidden_size");
    a.ffn_hidden_override = r.integer("intermediate_size");
    a.n_layers = r.integer("num_hidden_layers");
    a.n_heads = r.integer("num_attention_heads");
    // LlamaConfig's defaults for the optional keys.
    a.n_kv_heads = r.integer("num_key_value_heads", a.n_heads);
    a.vocab_size = r.integer("vocab_size");
    a.norm_eps = r.number("rms_norm_eps");
    a.rope_theta = r.number("rope_theta", 10000.0);
    a.max_seq_len = r.integer("max_position_embeddings", 2048);
    if (a.dim % a.n_heads != 0)
        fail("{}: hidden_size {} is not divisible by num_attention_heads {}", path, a.dim,
             a.n_heads);
    if (a.n_heads % a.n_kv_heads != 0)
        fail("{}: num_attention_heads {} is not divisible by num_key_value_heads {}", path,
             a.n_heads, a.n_kv_heads);
    if (r.find("head_dim") && r.integer("head_dim") != a.head_dim())
        fail("{}: head_dim {} differs from hidden_size / num_attention_heads = {} (not supported)",
             path, r.integer("head_dim"), a.head_dim());
    if (a.head_dim() % 2 != 0)
        fail("{}: head dimension {} must be even for RoPE", path, a.head_dim());
    c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
    c.bos_token_id = r.token_id("bos_token_id");
    c.eos_token_id = r.token_id("eos_token_id");
    return c;
}

bool is_hf_llama_folder(const std::string& dir) {
    const fs::path d(dir);
    return fs::is_directory(d) && fs::exists(d / "config.json") && !fs::exists(d / "manifest.json");
}

void write_hf_llama_safetensors(Transformer& model, const std::string& path) {
    SafetensorsWriter w;
    for (const auto& v : model.param_views())
        w.add<float>(hf_llama_name(v.name), std::vector<int64_t>(v.shape.begin(), v.shape.end()),
                     model.params().data() + v.offset);
    // transformers' loader checks this metadata to accept a PyTorch-layout file.
    w.set_metadata("format", "pt");
    w.write(path);
}

void write_hf_llama_folder(Transformer& model, std::optional<int32_t> bos,
                           std::optional<int32_t> eos, const std::string& dir) {
    const std::string config = hf_llama_config_json(model.args(), bos, eos);  // checks first
    write_hf_llama_safetensors(model, (fs::path(dir) / "model.safetensors").string());
    const fs::path cfg = fs::path(dir) / "config.json";
    std::ofstream out(cfg, std::ios::binary);
    out << config;
    if (!out.flush()) fail("{}: write failed", cfg.string());
}

void load_hf_llama_weights(const std::string& dir, Transformer& model) {
    const fs::path d(dir);
    const std::string cfg_path = (d / "config.json").string();
    const HfLlamaConfig c = read_hf_llama_config(cfg_path);
    const ModelArgs& want = model.args();
    auto differs = [&](const char* key, auto theirs, auto ours, const char* our_name) {
        if (theirs != ours)
            fail("{}: {} is {} but the model being loaded has {} {}", cfg_path, key, theirs,
                 our_name, ours);
    };
    differs("hidden_size", c.args.dim, want.dim, "dim");
    differs("num_hidden_layers", c.args.n_layers, want.n_layers, "n_layers");
    differs("num_attention_heads", c.args.n_heads, want.n_heads, "n_heads");
    differs("num_key_value_heads", c.args.n_kv_heads, want.n_kv_heads, "n_kv_heads");
    differs("intermediate_size", c.args.ffn_hidden(), want.ffn_hidden(), "ffn hidden");
    differs("vocab_size", c.args.vocab_size, want.vocab_size, "vocab_size");
    differs("rope_theta", c.args.rope_theta, want.rope_theta, "rope_theta");
    differs("rms_norm_eps", c.args.norm_eps, want.norm_eps, "norm_eps");
    if (c.args.qk_norm != want.qk_norm)
        fail("{}: model_type {} {} QK-norm but the model being loaded {}", cfg_path,
             c.args.qk_norm ? "qwen3" : "llama", c.args.qk_norm ? "has" : "has no",
             want.qk_norm ? "has it (a Qwen3 folder)" : "has none (a Llama folder)");
    if (want.attn_softcap > 0 || want.final_softcap > 0 || want.ffn != FfnType::swiglu)
        fail(
            "{}: the model being loaded has {}, which a Hugging Face Llama/Qwen3 folder cannot "
            "hold; start it from an agpt checkpoint instead",
            cfg_path, want.describe_switches());

    const fs::path file = d / "model.safetensors";
    if (!fs::exists(file)) {
        if (fs::exists(d / "model.safetensors.index.json"))
            fail(
                "{}: sharded weights (model.safetensors.index.json) are not supported; save "
                "the model as one model.safetensors",
                dir);
        fail("{}: missing", file.string());
    }
    const SafetensorsFile st(file.string());
    std::set<std::string> expected;
    std::vector<float> out(model.params().size(), 0.0f);
    for (const auto& v : model.param_views()) {
        if (c.tie_word_embeddings && v.name == "output.weight") continue;
        const std::string hf = hf_llama_name(v.name);
        expected.insert(hf);
        if (!st.contains(hf)) fail("{}: no tensor '{}'", file.string(), hf);
        const auto& t = st.tensor(hf);
        const std::vector<int64_t> shape(v.shape.begin(), v.shape.end());
        if (t.shape != shape)
            fail("{}: tensor '{}' has shape [{}], config.json needs [{}]", file.string(), hf,
                 fmt::join(t.shape, ", "), fmt::join(shape, ", "));
        float* dst = out.data() + v.offset;
        if (t.dtype == SafetensorsDtype::F64) {
            const std::vector<double> src = st.get<double>(hf);
            for (std::size_t i = 0; i < src.size(); i++) dst[i] = static_cast<float>(src[i]);
        } else {
            st.read_into<float>(hf, dst, v.numel());
        }
    }
    for (const auto& n : st.names()) {
        // Old transformers versions saved RoPE's inverse frequencies as buffers; they are
        // recomputed from rope_theta.
        if (expected.count(n) || n.ends_with(".rotary_emb.inv_freq")) continue;
        if (c.tie_word_embeddings && n == "lm_head.weight") continue;
        fail("{}: unexpected tensor '{}' (not part of a Llama model with this config.json)",
             file.string(), n);
    }
    if (c.tie_word_embeddings) {
        const ParamView& e = model.view("tok_embeddings.weight");
        const ParamView& h = model.view("output.weight");
        std::copy_n(out.data() + e.offset, e.numel(), out.data() + h.offset);
    }
    // Copied into place: an optimizer may hold pointers into the parameter buffer.
    std::copy(out.begin(), out.end(), model.params().begin());
}

}  // namespace agpt
