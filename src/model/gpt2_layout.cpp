// GPT-2's shapes (model/gpt2.h): the arguments' derived sizes, the flavors and the parameter
// layout, which the CPU model and the GPU model (model/gpu/gpt2_gpu.h) share; the passes are in
// gpt2.cpp.
#include <string>
#include <vector>

#include "model/gpt2.h"

namespace agpt {

int Gpt2Args::padded_vocab() const {
    if (padded_vocab_size > 0) return padded_vocab_size;
    return (vocab_size + 127) / 128 * 128;
}

long Gpt2Args::num_embedding_params() const {
    return (static_cast<long>(padded_vocab()) + max_seq_len) * dim;
}

long Gpt2Args::num_params() const {
    const long d = dim, f = ffn_hidden();
    const long per_layer = 2 * d                // ln_1
                           + 3 * d * d + 3 * d  // c_attn
                           + d * d + d          // attn.c_proj
                           + 2 * d              // ln_2
                           + f * d + f          // c_fc
                           + d * f + d;         // mlp.c_proj
    return num_embedding_params() + n_layers * per_layer + 2 * d;
}

double Gpt2Args::flops_per_token(int seq_len) const {
    const double n = static_cast<double>(num_params() - num_embedding_params()) +
                     static_cast<double>(vocab_size) * dim;
    return 6.0 * n + 12.0 * n_layers * n_heads * head_dim() * static_cast<double>(seq_len);
}

namespace {

Gpt2Args make(int dim, int layers, int heads, int vocab, int max_seq) {
    Gpt2Args a;
    a.dim = dim;
    a.n_layers = layers;
    a.n_heads = heads;
    a.vocab_size = vocab;
    a.max_seq_len = max_seq;
    return a;
}

std::size_t elements(const std::vector<int>& shape) {
    std::size_t n = 1;
    for (int d : shape) n *= static_cast<std::size_t>(d);
    return n;
}

}  // namespace

const std::vector<Gpt2Flavor>& gpt2_flavors() {
    static const std::vector<Gpt2Flavor> flavors = {
        {"gpt2_tiny", "2 layers, dim 64, 4 heads, vocab 512, context 128: tests",
         make(64, 2, 4, 512, 128)},
        {"124M", "GPT-2 small", make(768, 12, 12, 50257, 1024)},
        {"350M", "GPT-2 medium", make(1024, 24, 16, 50257, 1024)},
        {"774M", "GPT-2 large", make(1280, 36, 20, 50257, 1024)},
        {"1558M", "GPT-2 XL", make(1600, 48, 25, 50257, 1024)},
    };
    return flavors;
}

const Gpt2Flavor* find_gpt2_flavor(const std::string& name) {
    for (const auto& f : gpt2_flavors())
        if (f.name == name) return &f;
    return nullptr;
}

const Gpt2Flavor* find_gpt2_flavor_matching(const Gpt2Args& a) {
    for (const auto& f : gpt2_flavors())
        if (f.args.dim == a.dim && f.args.n_layers == a.n_layers && f.args.n_heads == a.n_heads)
            return &f;
    return nullptr;
}

std::vector<ParamView> gpt2_param_views(const Gpt2Args& args) {
    const int C = args.dim, F = args.ffn_hidden();
    std::vector<ParamView> views;
    std::size_t off = 0;
    auto add = [&](std::string name, std::vector<int> shape, std::string role) {
        ParamView v{std::move(name), off, std::move(shape), std::move(role)};
        off += elements(v.shape);
        views.push_back(std::move(v));
    };
    add("wte.weight", {args.padded_vocab(), C}, "embedding");
    add("wpe.weight", {args.max_seq_len, C}, "embedding");
    for (int i = 0; i < args.n_layers; i++) {
        const std::string p = "h." + std::to_string(i) + ".";
        add(p + "ln_1.weight", {C}, "norm");
        add(p + "ln_1.bias", {C}, "bias");
        add(p + "attn.c_attn.weight", {3 * C, C}, "attention");
        add(p + "attn.c_attn.bias", {3 * C}, "bias");
        add(p + "attn.c_proj.weight", {C, C}, "attention");
        add(p + "attn.c_proj.bias", {C}, "bias");
        add(p + "ln_2.weight", {C}, "norm");
        add(p + "ln_2.bias", {C}, "bias");
        add(p + "mlp.c_fc.weight", {F, C}, "ffn");
        add(p + "mlp.c_fc.bias", {F}, "bias");
        add(p + "mlp.c_proj.weight", {C, F}, "ffn");
        add(p + "mlp.c_proj.bias", {C}, "bias");
    }
    add("ln_f.weight", {C}, "norm");
    add("ln_f.bias", {C}, "bias");
    return views;
}

}  // namespace agpt
