#pragma once
#include <string>
#include <vector>
// The agpt model's hyper-parameters and the registry of named flavors (design.md's table plus
// small flavors sized for a laptop-class CPU).
namespace agpt {

struct ModelArgs {
    int dim = 256;
    int n_layers = 6;
    int n_heads = 16;
    int n_kv_heads = 16;
    int vocab_size = 32000;
    // FFN width: torchtitan's rule from dim, ffn_dim_multiplier and multiple_of, unless
    // ffn_hidden_override > 0.
    double ffn_dim_multiplier = 0.0;  // 0: none
    int multiple_of = 256;
    int ffn_hidden_override = 0;
    double rope_theta = 500000.0;
    double norm_eps = 1e-5;
    int max_seq_len = 8192;

    int head_dim() const { return dim / n_heads; }
    int ffn_hidden() const;
    int qkv_dim() const { return (n_heads + 2 * n_kv_heads) * head_dim(); }
    long num_params() const;
    long num_embedding_params() const { return static_cast<long>(vocab_size) * dim; }
    // Training FLOPs per token, design.md's formula: 6·(N − N_embedding) + 12·L·H·hd·T.
    double flops_per_token(int seq_len) const;
};

struct Flavor {
    std::string name;
    std::string description;
    ModelArgs args;
};

const std::vector<Flavor>& agpt_flavors();
// nullptr when unknown.
const Flavor* find_flavor(const std::string& name);

}  // namespace agpt
