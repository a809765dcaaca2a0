#include "tools/toml_overrides.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"

namespace agpt {

namespace {

using Positioned = std::pair<toml::source_position, std::pair<std::string, std::string>>;

void flatten(const toml::table& t, const std::string& prefix, const std::string& where,
             const std::set<std::string>& skip, std::vector<Positioned>& out) {
    for (const auto& [k, node] : t) {
        const std::string leaf(k.str());
        if (prefix.empty() && skip.count(leaf)) continue;
        const std::string key = prefix.empty() ? leaf : prefix + "." + leaf;
        if (const toml::table* sub = node.as_table()) {
            flatten(*sub, key, where, {}, out);
            continue;
        }
        out.push_back({node.source().begin,
                       {key, toml_scalar_text(node, fmt::format("{}: '{}'", where, key))}});
    }
}

}  // namespace

toml::table parse_toml_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail("{}: cannot open file", path);
    std::stringstream text;
    text << in.rdbuf();
    try {
        return toml::parse(text.str(), path);
    } catch (const toml::parse_error& e) {
        fail("{}: line {}: {}", path, e.source().begin.line, e.description());
    }
}

std::string toml_scalar_text(const toml::node& n, const std::string& where) {
    if (auto v = n.as_string()) return v->get();
    if (auto v = n.as_integer()) return fmt::format("{}", v->get());
    if (auto v = n.as_floating_point()) return fmt::format("{}", v->get());
    if (auto v = n.as_boolean()) return v->get() ? "true" : "false";
    fail("{}: expected a string, number or boolean", where);
}

ConfigOverrides overrides_from_table(const toml::table& t, const std::string& where,
                                     const std::set<std::string>& skip) {
    std::vector<Positioned> found;
    flatten(t, "", where, skip, found);
    std::stable_sort(found.begin(), found.end(), [](const Positioned& a, const Positioned& b) {
        return a.first.line != b.first.line ? a.first.line < b.first.line
                                            : a.first.column < b.first.column;
    });
    ConfigOverrides out;
    for (auto& [pos, kv] : found) out.push_back(std::move(kv));
    return out;
}

}  // namespace agpt
