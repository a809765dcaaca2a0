#include "tools/models.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "model/gpt2.h"
#include "model/model_args.h"

namespace agpt {

std::vector<ModelListing> list_models() {
    std::vector<ModelListing> rows;
    for (const Flavor& f : agpt_flavors()) {
        const ModelArgs& a = f.args;
        ModelListing r;
        r.name = "agpt";
        r.flavor = f.name;
        r.description = f.description;
        r.params = a.num_params();
        r.active_params = a.num_active_params();  // MoE: the routed experts a token skips are out
        r.dim = a.dim;
        r.n_layers = a.n_layers;
        r.n_heads = a.n_heads;
        r.n_kv_heads = a.n_kv_heads;
        r.ffn_hidden = a.ffn_hidden();
        r.vocab_size = a.vocab_size;
        r.switches = a.describe_switches();
        rows.push_back(std::move(r));
    }
    for (const Gpt2Flavor& f : gpt2_flavors()) {
        const Gpt2Args& a = f.args;
        ModelListing r;
        r.name = "gpt2";
        r.flavor = f.name;
        r.description = f.description;
        r.params = a.num_params();  // wte's padding rows included, as llm.c counts
        r.active_params = r.params;
        r.dim = a.dim;
        r.n_layers = a.n_layers;
        r.n_heads = a.n_heads;
        r.n_kv_heads = a.n_heads;
        r.ffn_hidden = a.ffn_hidden();
        r.vocab_size = a.vocab_size;
        r.switches = "none";
        rows.push_back(std::move(r));
    }
    return rows;
}

std::string format_count(long n) {
    const double v = static_cast<double>(n);
    const char* units[] = {"", "K", "M", "B", "T"};
    int u = 0;
    double x = v;
    while (std::abs(x) >= 999.5 && u < 4) {
        x /= 1000.0;
        u++;
    }
    if (u == 0) return fmt::format("{}", n);
    const int decimals = std::abs(x) >= 99.95 ? 0 : std::abs(x) >= 9.995 ? 1 : 2;
    return fmt::format("{:.{}f}{}", x, decimals, units[u]);
}

std::string models_table(const std::vector<ModelListing>& rows) {
    std::size_t wf = 6;
    for (const auto& r : rows) wf = std::max(wf, r.flavor.size());
    std::string out = fmt::format(
        "{:<6} {:<{}} {:>8} {:>8} {:>6} {:>6} {:>5} {:>4} {:>6} {:>7}  {}\n", "name", "flavor", wf,
        "params", "active", "dim", "layers", "heads", "kv", "ffn", "vocab", "switches");
    for (const auto& r : rows)
        out += fmt::format("{:<6} {:<{}} {:>8} {:>8} {:>6} {:>6} {:>5} {:>4} {:>6} {:>7}  {}\n",
                           r.name, r.flavor, wf, format_count(r.params),
                           format_count(r.active_params), r.dim, r.n_layers, r.n_heads,
                           r.n_kv_heads, r.ffn_hidden, r.vocab_size, r.switches);
    return out;
}

std::string models_json(const std::vector<ModelListing>& rows) {
    // One object per line, keys in the documented order.
    std::string out = "[";
    for (std::size_t i = 0; i < rows.size(); i++) {
        const nlohmann::ordered_json o = {{"name", rows[i].name},
                                          {"flavor", rows[i].flavor},
                                          {"params", rows[i].params},
                                          {"active_params", rows[i].active_params}};
        out += (i ? ",\n " : "\n ") + o.dump();
    }
    return out + "\n]\n";
}

}  // namespace agpt
