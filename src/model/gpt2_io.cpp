#include "model/gpt2_io.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>

#include "core/error.h"

namespace agpt {

void write_gpt2_safetensors(const std::vector<ParamView>& views, const float* params,
                            const Gpt2Args& args, const std::string& path,
                            const std::map<std::string, std::string>& extra) {
    SafetensorsWriter w;
    for (const auto& v : views)
        w.add<float>(v.name, std::vector<int64_t>(v.shape.begin(), v.shape.end()),
                     params + v.offset);
    w.set_metadata("format", "pt");
    w.set_metadata("agpt.model", "gpt2");
    w.set_metadata("gpt2.dim", std::to_string(args.dim));
    w.set_metadata("gpt2.n_layers", std::to_string(args.n_layers));
    w.set_metadata("gpt2.n_heads", std::to_string(args.n_heads));
    w.set_metadata("gpt2.vocab_size", std::to_string(args.vocab_size));
    w.set_metadata("gpt2.padded_vocab_size", std::to_string(args.padded_vocab()));
    w.set_metadata("gpt2.max_seq_len", std::to_string(args.max_seq_len));
    w.set_metadata("gpt2.norm_eps", fmt::format("{:.17g}", args.norm_eps));
    for (const auto& [k, v] : extra) w.set_metadata(k, v);
    w.write(path);
}

Gpt2Args gpt2_args_from_metadata(const SafetensorsFile& file) {
    const auto& meta = file.metadata();
    auto get = [&](const std::string& key) -> const std::string& {
        const auto it = meta.find(key);
        if (it == meta.end())
            fail("{}: no '{}' in the metadata (not a gpt2 weights file written by agpt)",
                 file.path(), key);
        return it->second;
    };
    if (get("agpt.model") != "gpt2")
        fail("{}: holds a '{}' model, not gpt2", file.path(), get("agpt.model"));
    auto integer = [&](const std::string& key) {
        const std::string& s = get(key);
        int v = 0;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || end != s.data() + s.size() || v <= 0)
            fail("{}: metadata '{}' = '{}' is not a positive integer", file.path(), key, s);
        return v;
    };
    Gpt2Args a;
    a.dim = integer("gpt2.dim");
    a.n_layers = integer("gpt2.n_layers");
    a.n_heads = integer("gpt2.n_heads");
    a.vocab_size = integer("gpt2.vocab_size");
    a.padded_vocab_size = integer("gpt2.padded_vocab_size");
    a.max_seq_len = integer("gpt2.max_seq_len");
    try {
        a.norm_eps = std::stod(get("gpt2.norm_eps"));
    } catch (const std::exception&) {
        fail("{}: metadata 'gpt2.norm_eps' = '{}' is not a number", file.path(),
             get("gpt2.norm_eps"));
    }
    return a;
}

void read_gpt2_weights(const SafetensorsFile& file, Gpt2& model) {
    std::vector<float> out(model.params().size(), 0.0f);
    for (const auto& v : model.param_views()) {
        if (!file.contains(v.name)) fail("{}: no tensor '{}'", file.path(), v.name);
        const auto& t = file.tensor(v.name);
        const std::vector<int64_t> want(v.shape.begin(), v.shape.end());
        if (t.shape != want)
            fail("{}: tensor '{}' has shape [{}], the model needs [{}]", file.path(), v.name,
                 fmt::join(t.shape, ", "), fmt::join(want, ", "));
        file.read_into<float>(v.name, out.data() + v.offset, v.numel());
    }
    model.params() = std::move(out);
}

}  // namespace agpt
