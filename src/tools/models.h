#pragma once
// The model zoo as `agpt models` prints it: every registered flavor with its parameter counts.
//
// Intended use:
//   const std::vector<ModelListing> rows = list_models();
//   std::fputs(models_table(rows).c_str(), stdout);   // or models_json(rows)
#include <string>
#include <vector>

namespace agpt {

struct ModelListing {
    std::string name;    // the model family (job config's model.name): "agpt" for the dense ones
    std::string flavor;  // model.flavor
    std::string description;
    long params = 0;         // every parameter, embedding and head included
    long active_params = 0;  // used per token: = params for dense models (MoE: fewer)
    int dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, ffn_hidden = 0, vocab_size = 0;
    std::string switches;  // "none", or "qk_norm, attn_softcap 30, ffn relu2"
};

// Every flavor of every family, in registry order (each base flavor, then its suffix variants).
std::vector<ModelListing> list_models();

// One line per model: family, flavor, parameters (total and active, as 1.23M / 4.56B), shape and
// switches, under a header line.
std::string models_table(const std::vector<ModelListing>& rows);

// A JSON list of {"name", "flavor", "params", "active_params"} objects (exact integer counts),
// one per model, in the same order.
std::string models_json(const std::vector<ModelListing>& rows);

// 1234 -> "1.23K", 8030261248 -> "8.03B": three significant digits.
std::string format_count(long n);

}  // namespace agpt
