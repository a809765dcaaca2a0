#include "model/model_args.h"

namespace agpt {

int ModelArgs::ffn_hidden() const {
    if (ffn_hidden_override > 0) return ffn_hidden_override;
    int hidden = 4 * dim;
    hidden = static_cast<int>(2 * hidden / 3);
    if (ffn_dim_multiplier > 0.0) hidden = static_cast<int>(ffn_dim_multiplier * hidden);
    return multiple_of * ((hidden + multiple_of - 1) / multiple_of);
}

long ModelArgs::num_params() const {
    const long d = dim, f = ffn_hidden(), hd = head_dim();
    const long attn = d * (n_heads + 2L * n_kv_heads) * hd + static_cast<long>(n_heads) * hd * d;
    const long ffn = 3 * d * f;
    const long per_layer = attn + ffn + 2 * d;
    return 2 * static_cast<long>(vocab_size) * d + n_layers * per_layer + d;
}

double ModelArgs::flops_per_token(int seq_len) const {
    const double n = static_cast<double>(num_params() - num_embedding_params());
    return 6.0 * n + 12.0 * n_layers * n_heads * head_dim() * static_cast<double>(seq_len);
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

}  // namespace

const std::vector<Flavor>& agpt_flavors() {
    static const std::vector<Flavor> flavors = {
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
    return flavors;
}

const Flavor* find_flavor(const std::string& name) {
    for (const auto& f : agpt_flavors())
        if (f.name == name) return &f;
    return nullptr;
}

}  // namespace agpt
