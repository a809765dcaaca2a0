#include "tools/llmc_import.h"

#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/gpt2_io.h"
#include "train/checkpoint.h"

namespace agpt {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "llm.c files are little-endian");

namespace {

constexpr int kHeaderInts = 256;
constexpr std::size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);

// Parameter names (per layer: after "h.<i>.") in llm.c's file order; `layered` tensors are
// stored stacked over the layers.
struct LlmcTensor {
    const char* name;
    bool layered;
};
constexpr LlmcTensor kLlmcOrder[] = {
    {"wte.weight", false},        {"wpe.weight", false},        {"ln_1.weight", true},
    {"ln_1.bias", true},          {"attn.c_attn.weight", true}, {"attn.c_attn.bias", true},
    {"attn.c_proj.weight", true}, {"attn.c_proj.bias", true},   {"ln_2.weight", true},
    {"ln_2.bias", true},          {"mlp.c_fc.weight", true},    {"mlp.c_fc.bias", true},
    {"mlp.c_proj.weight", true},  {"mlp.c_proj.bias", true},    {"ln_f.weight", false},
    {"ln_f.bias", false},
};

// The model's views in the order their data appears in an llm.c file.
std::vector<ParamView> llmc_file_order(const Gpt2Args& args) {
    std::map<std::string, ParamView> by_name;
    for (auto& v : gpt2_param_views(args)) by_name.emplace(v.name, v);
    std::vector<ParamView> order;
    for (const LlmcTensor& t : kLlmcOrder) {
        if (!t.layered) {
            order.push_back(by_name.at(t.name));
            continue;
        }
        for (int l = 0; l < args.n_layers; l++)
            order.push_back(by_name.at("h." + std::to_string(l) + "." + t.name));
    }
    return order;
}

std::string describe(const Gpt2Args& a) {
    return fmt::format(
        "max_seq_len {}, vocab_size {}, num_layers {}, num_heads {}, channels {}, "
        "padded_vocab_size {}",
        a.max_seq_len, a.vocab_size, a.n_layers, a.n_heads, a.dim, a.padded_vocab());
}

}  // namespace

Gpt2Args read_llmc_header(const std::string& path) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) fail("{}: no such file", path);
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec) fail("{}: cannot read its size: {}", path, ec.message());
    if (size < kHeaderBytes)
        fail("{}: truncated llm.c checkpoint ({} bytes; the header alone is {})", path, size,
             kHeaderBytes);
    int32_t h[kHeaderInts];
    {
        std::ifstream in(path, std::ios::binary);
        if (!in.read(reinterpret_cast<char*>(h), kHeaderBytes)) fail("{}: cannot read", path);
    }
    if (h[0] != kLlmcMagic)
        fail("{}: not an llm.c GPT-2 checkpoint (magic {}, expected {})", path, h[0], kLlmcMagic);
    if (h[1] != kLlmcVersion)
        fail(
            "{}: llm.c checkpoint version {} is not supported (expected {}: fp32 weights with "
            "padded_vocab_size{})",
            path, h[1], kLlmcVersion,
            h[1] == 5 ? "; version 5 is bf16, write an fp32 checkpoint with llm.c" : "");
    Gpt2Args a;
    a.max_seq_len = h[2];
    a.vocab_size = h[3];
    a.n_layers = h[4];
    a.n_heads = h[5];
    a.dim = h[6];
    a.padded_vocab_size = h[7];
    // Bounds that keep every size computation far from overflow; real GPT-2s are well inside.
    const bool plausible = a.max_seq_len > 0 && a.max_seq_len <= (1 << 24) && a.vocab_size > 0 &&
                           a.vocab_size <= (1 << 24) && a.n_layers > 0 && a.n_layers <= 4096 &&
                           a.n_heads > 0 && a.dim > 0 && a.dim <= 65536 &&
                           a.padded_vocab_size > 0 && a.padded_vocab_size <= (1 << 24);
    if (!plausible) fail("{}: implausible llm.c header ({})", path, describe(a));
    if (a.dim % a.n_heads != 0)
        fail("{}: llm.c header has channels {} not divisible by num_heads {}", path, a.dim,
             a.n_heads);
    if (a.padded_vocab_size < a.vocab_size)
        fail("{}: llm.c header has padded_vocab_size {} smaller than vocab_size {}", path,
             a.padded_vocab_size, a.vocab_size);
    const std::uintmax_t want =
        kHeaderBytes + static_cast<std::uintmax_t>(a.num_params()) * sizeof(float);
    if (size != want)
        fail(
            "{}: {} bytes, but its header ({}) describes {} bytes of fp32 parameters "
            "({}; the file is truncated or its header is wrong)",
            path, size, describe(a), want, size < want ? "short" : "too long");
    return a;
}

void read_llmc_params(const std::string& path, const Gpt2Args& args, float* params) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path);
    in.seekg(static_cast<std::streamoff>(kHeaderBytes));
    for (const ParamView& v : llmc_file_order(args)) {
        if (!in.read(reinterpret_cast<char*>(params + v.offset),
                     static_cast<std::streamsize>(v.numel() * sizeof(float))))
            fail("{}: truncated while reading {} (llm.c checkpoint)", path, v.name);
    }
}

void write_llmc_checkpoint(const Gpt2Args& args, const float* params, const std::string& path) {
    int32_t h[kHeaderInts] = {};
    h[0] = kLlmcMagic;
    h[1] = kLlmcVersion;
    h[2] = args.max_seq_len;
    h[3] = args.vocab_size;
    h[4] = args.n_layers;
    h[5] = args.n_heads;
    h[6] = args.dim;
    h[7] = args.padded_vocab();
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) fail("{}: cannot create", tmp);
        out.write(reinterpret_cast<const char*>(h), kHeaderBytes);
        for (const ParamView& v : llmc_file_order(args))
            out.write(reinterpret_cast<const char*>(params + v.offset),
                      static_cast<std::streamsize>(v.numel() * sizeof(float)));
        if (!out.flush()) fail("{}: write failed", tmp);
    }
    fs::rename(tmp, path);
}

LlmcImportResult import_llmc(const std::string& llmc_file, const std::string& out_dir) {
    if (out_dir.empty()) fail("--out: no folder given");
    if (fs::exists(out_dir)) fail("{}: already exists; choose another --out", out_dir);
    LlmcImportResult r;
    r.args = read_llmc_header(llmc_file);
    r.params = r.args.num_params();
    if (const Gpt2Flavor* f = find_gpt2_flavor_matching(r.args)) r.flavor = f->name;
    std::vector<float> params(static_cast<std::size_t>(r.params));
    read_llmc_params(llmc_file, r.args, params.data());

    // A fresh "<out>.tmp": debris of an interrupted import is replaced.
    fs::path tmp = fs::path(out_dir).lexically_normal();
    if (!tmp.has_filename()) tmp = tmp.parent_path();
    tmp += ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    std::map<std::string, std::string> extra{{"agpt.source", "llm.c"}};
    if (!r.flavor.empty()) extra["gpt2.flavor"] = r.flavor;
    write_gpt2_safetensors(gpt2_param_views(r.args), params.data(), r.args,
                           (tmp / "model.safetensors").string(), extra);
    finalize_checkpoint(tmp.string(), out_dir, 0, true);
    return r;
}

std::unique_ptr<Gpt2> load_gpt2_model_folder(const std::string& dir, int max_batch, int max_seq) {
    const fs::path d(dir);
    const fs::path file = fs::is_directory(d) ? d / "model.safetensors" : d;
    if (!fs::exists(file)) fail("{}: no model.safetensors", dir);
    if (fs::is_directory(d) && fs::exists(d / "manifest.json")) verify_checkpoint(dir);
    const SafetensorsFile st(file.string());
    const Gpt2Args args = gpt2_args_from_metadata(st);
    auto model = std::make_unique<Gpt2>(args, max_batch, max_seq > 0 ? max_seq : args.max_seq_len);
    read_gpt2_weights(st, *model);
    return model;
}

}  // namespace agpt
