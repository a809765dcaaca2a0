#include "optim/optimizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <set>

#include <fmt/ranges.h>

#include "core/error.h"
#include "model/transformer.h"
#include "optim/adamw_group.h"
#include "optim/ademamix.h"
#include "optim/lion.h"
#include "optim/mano.h"
#include "optim/muon.h"
#include "optim/schedule_free_adamw.h"
#include "optim/sophia.h"
#include "optim/spam.h"

namespace agpt {

std::size_t OptimParam::numel() const {
    std::size_t n = 1;
    for (int d : shape) n *= static_cast<std::size_t>(d);
    return n;
}

std::vector<OptimParam> optim_params_from(const std::vector<ParamView>& views, float* values,
                                          float* grads) {
    std::vector<OptimParam> out;
    out.reserve(views.size());
    for (const auto& v : views) {
        // The MoE expert bias has no gradient: the aux-loss-free balancing rule sets it
        // (Transformer::update_expert_bias), so no optimizer (nor its weight decay) may touch it.
        if (v.role == "expert_bias") continue;
        out.push_back({v.name, v.role, v.shape, values + v.offset, grads + v.offset});
    }
    return out;
}

bool is_hidden_matrix(const OptimParam& p) {
    // The references exclude embeddings and the LM head by identity, not by rank: both are 2-D,
    // and orthogonalising an embedding's rows makes no sense.
    return p.shape.size() == 2 && (p.role == "attention" || p.role == "ffn");
}

// ---- Hyper ----------------------------------------------------------------------------------

namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string value_text(const HyperValue& v) {
    if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
    return "'" + std::get<std::string>(v) + "'";
}

HyperValue checked_value(const std::string& where, const HyperKey& k, const HyperValue& v) {
    switch (k.kind) {
        case HyperKind::kNumber:
            if (const auto* d = std::get_if<double>(&v)) {
                if (!std::isfinite(*d)) fail("{}: {} must be finite, got {}", where, k.key, *d);
                return v;
            }
            fail("{}: {} must be a number, got {}", where, k.key, value_text(v));
        case HyperKind::kInteger:
            if (const auto* d = std::get_if<double>(&v)) {
                if (!(std::isfinite(*d) && std::floor(*d) == *d && std::abs(*d) < 9e15))
                    fail("{}: {} must be a whole number, got {}", where, k.key, *d);
                return v;
            }
            fail("{}: {} must be a whole number, got {}", where, k.key, value_text(v));
        case HyperKind::kBool:
            if (const auto* d = std::get_if<double>(&v)) {
                if (*d == 0.0 || *d == 1.0) return v;
            } else {
                const std::string s = lower(std::get<std::string>(v));
                if (s == "true") return 1.0;
                if (s == "false") return 0.0;
            }
            fail("{}: {} must be true or false, got {}", where, k.key, value_text(v));
        case HyperKind::kChoice: {
            std::string s;
            if (const auto* d = std::get_if<double>(&v))
                s = fmt::format("{}", *d);  // e.g. version = 2 written as a number
            else
                s = std::get<std::string>(v);
            for (const auto& c : k.choices)
                if (c == s) return c;
            std::string list;
            for (const auto& c : k.choices) list += (list.empty() ? "" : ", ") + c;
            fail("{}: {} must be one of {}; got {}", where, k.key, list, value_text(v));
        }
    }
    fail("{}: {} has an unknown kind", where, k.key);
}

}  // namespace

Hyper::Hyper(const std::string& where, const std::vector<HyperKey>& keys,
             const std::map<std::string, HyperValue>& given)
    : where_(where) {
    for (const auto& k : keys) values_[k.key] = checked_value(where, k, k.default_value);
    for (const auto& [key, value] : given) {
        auto it =
            std::find_if(keys.begin(), keys.end(), [&](const HyperKey& k) { return k.key == key; });
        if (it == keys.end()) {
            std::string list;
            for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k.key;
            fail("{}: unknown key '{}' (valid keys: {})", where, key, list);
        }
        values_[key] = checked_value(where, *it, value);
    }
}

const HyperValue& Hyper::at(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) fail("{}: no key '{}' (internal)", where_, key);
    return it->second;
}

double Hyper::num(const std::string& key) const {
    const auto* d = std::get_if<double>(&at(key));
    if (!d) fail("{}: {} is not a number (internal)", where_, key);
    return *d;
}

long Hyper::integer(const std::string& key) const {
    return static_cast<long>(num(key));
}

bool Hyper::flag(const std::string& key) const {
    return num(key) != 0.0;
}

const std::string& Hyper::choice(const std::string& key) const {
    const auto* s = std::get_if<std::string>(&at(key));
    if (!s) fail("{}: {} is not a choice (internal)", where_, key);
    return *s;
}

// ---- state ----------------------------------------------------------------------------------

std::size_t OptimStateTensor::numel() const {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
}

std::size_t OptimStateTensor::nbytes() const {
    return numel() * safetensors_dtype_size(dtype);
}

std::size_t Optimizer::state_bytes() {
    std::size_t total = 0;
    for (const auto& t : state_tensors()) total += t.nbytes();
    return total;
}

void Optimizer::set_hessian_hook(HessianHook) {
    fail("optimizer {}: takes no Hessian hook (only SophiaG does)", name());
}

void Optimizer::load_state(const std::map<std::string, SavedStateTensor>& saved) {
    std::set<std::string> used;
    auto copy_in = [&](const OptimStateTensor& dst) {
        auto it = saved.find(dst.name);
        if (it == saved.end())
            fail(
                "optimizer {}: the checkpoint has no state '{}' (was it written with another "
                "optimizer or other parameters?)",
                name(), dst.name);
        const SavedStateTensor& src = it->second;
        if (src.dtype != dst.dtype || src.shape != dst.shape)
            fail("optimizer {}: state '{}' is {} {} in the checkpoint, expected {} {}", name(),
                 dst.name, safetensors_dtype_name(src.dtype), fmt::join(src.shape, "x"),
                 safetensors_dtype_name(dst.dtype), fmt::join(dst.shape, "x"));
        if (dst.nbytes() > 0) std::memcpy(dst.data, src.data, dst.nbytes());
        used.insert(dst.name);
    };
    // Scalars first: what else the state holds may depend on them (Schedule-Free's mode).
    for (const auto& t : state_tensors())
        if (t.shape.empty()) copy_in(t);
    after_scalars_loaded();
    for (const auto& t : state_tensors())
        if (!t.shape.empty()) copy_in(t);
    for (const auto& [n, t] : saved)
        if (!used.count(n))
            fail(
                "optimizer {}: the checkpoint holds state '{}' this optimizer does not have "
                "(was it written with another optimizer?)",
                name(), n);
}

// ---- registry -------------------------------------------------------------------------------

namespace {

std::vector<OptimizerInfo>& registry_storage() {
    static std::vector<OptimizerInfo> reg = [] {
        std::vector<OptimizerInfo> r;
        r.push_back(adamw_info());
        r.push_back(muon_info());
        r.push_back(mano_info());
        r.push_back(sophia_info());
        r.push_back(spam_info());
        r.push_back(lion_info());
        r.push_back(schedule_free_adamw_info());
        r.push_back(ademamix_info());
        return r;
    }();
    return reg;
}

}  // namespace

const std::vector<OptimizerInfo>& optimizer_registry() {
    return registry_storage();
}

const OptimizerInfo& optimizer_info(const std::string& name) {
    const auto& reg = registry_storage();
    for (const auto& info : reg)
        if (info.name == name) return info;
    for (const auto& info : reg)
        if (lower(info.name) == lower(name)) return info;
    std::string list;
    for (const auto& info : reg) list += (list.empty() ? "" : " | ") + info.name;
    fail("optimizer: unknown name '{}' (known: {})", name, list);
}

void register_optimizer(OptimizerInfo info) {
    if (info.name.empty()) fail("register_optimizer: empty name");
    if (!info.factory) fail("register_optimizer: {} has no factory", info.name);
    for (const auto& existing : registry_storage())
        if (lower(existing.name) == lower(info.name))
            fail("register_optimizer: the name '{}' is taken", info.name);
    registry_storage().push_back(std::move(info));
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSpec& spec,
                                          std::vector<OptimParam> params) {
    const OptimizerInfo& info = optimizer_info(spec.name);
    for (const auto& p : params)
        if (!p.value || !p.grad)
            fail("optimizer {}: parameter '{}' has no buffer", info.name, p.name);
    const Hyper hyper("optimizer (" + info.name + ")", info.keys, spec.hyper);
    if (!info.routes_to_adamw && !spec.adamw.empty())
        fail(
            "optimizer.adamw: {} routes no parameter to AdamW, so [optimizer.adamw] keys have "
            "no effect; remove them",
            info.name);
    const Hyper adamw("optimizer.adamw", routed_adamw_keys(), spec.adamw);
    return info.factory(hyper, adamw, std::move(params));
}

namespace {

// Left-aligned in a column of width w (fmt's dynamic widths trip a GCC 12 false positive).
std::string pad(const std::string& s, std::size_t w) {
    return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
}

}  // namespace

std::map<std::string, RoutingTotal> routing_totals(const Optimizer& opt) {
    std::map<std::string, RoutingTotal> totals;
    for (const auto& r : opt.describe_routing()) {
        std::size_t n = 1;
        for (int d : r.shape) n *= static_cast<std::size_t>(d);
        totals[r.optimizer].tensors += 1;
        totals[r.optimizer].parameters += n;
    }
    return totals;
}

std::string routing_table(const Optimizer& opt) {
    const auto routes = opt.describe_routing();
    std::size_t wn = 9, ws = 5, wr = 4;
    std::vector<std::string> shapes;
    for (const auto& r : routes) {
        shapes.push_back(fmt::format("[{}]", fmt::join(r.shape, ", ")));
        wn = std::max(wn, r.param.size());
        ws = std::max(ws, shapes.back().size());
        wr = std::max(wr, r.role.size());
    }
    std::string out =
        pad("parameter", wn) + "  " + pad("shape", ws) + "  " + pad("role", wr) + "  optimizer\n";
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const auto& r = routes[i];
        out += pad(r.param, wn) + "  " + pad(shapes[i], ws) + "  " + pad(r.role, wr) + "  " +
               r.optimizer + "\n";
    }
    for (const auto& [name, t] : routing_totals(opt))
        out += fmt::format("{}: {} tensors, {} parameters\n", name, t.tensors, t.parameters);
    return out;
}

std::string describe_optimizers() {
    auto key_line = [](const HyperKey& k) {
        std::string def;
        if (const auto* d = std::get_if<double>(&k.default_value)) {
            if (k.kind == HyperKind::kBool)
                def = *d != 0.0 ? "true" : "false";
            else
                def = fmt::format("{}", *d);
        } else {
            def = std::get<std::string>(k.default_value);
        }
        std::string extra;
        if (k.kind == HyperKind::kChoice) extra = fmt::format(" ({})", fmt::join(k.choices, " | "));
        return "    " + pad(k.key, 16) + " = " + pad(def, 14) + " " + k.help + extra + "\n";
    };
    std::string out;
    for (const auto& info : optimizer_registry()) {
        out += info.name + ": " + info.description + "\n  source: " + info.paper + "\n";
        for (const auto& k : info.keys) out += key_line(k);
        if (info.routes_to_adamw)
            out += "  embeddings, LM head, norms and biases go to [optimizer.adamw]\n";
        out += "\n";
    }
    out += "[optimizer.adamw] (the AdamW of parameters a matrix optimizer does not take):\n";
    for (const auto& k : routed_adamw_keys()) out += key_line(k);
    return out;
}

}  // namespace agpt
