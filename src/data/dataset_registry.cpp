#include "data/dataset_registry.h"

#include <fmt/ranges.h>
#include <glob.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"

namespace agpt {

namespace fs = std::filesystem;

namespace {

constexpr const char* kBuiltinNames[] = {"tinyshakespeare"};
constexpr const char* kEntryKeys[] = {"path", "format", "text_field", "tokenizer"};

bool is_format(std::string_view f) {
    return f == "txt" || f == "jsonl" || f == "jsonl.zst" || f == "parquet" || f == "shards";
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// The format a path's ending names, "" when it names none (a folder, say).
std::string format_of_name(std::string_view path) {
    if (ends_with(path, ".jsonl.zst")) return "jsonl.zst";
    for (const char* f : {"txt", "jsonl", "parquet"})
        if (ends_with(path, std::string(".") + f)) return f;
    if (ends_with(path, ".bin")) return "shards";
    return "";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); j++) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); i++) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); j++) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1] ? 1 : 0)});
            diag = up;
        }
    }
    return row[b.size()];
}

std::string did_you_mean(std::string_view wrong, const std::vector<std::string>& candidates) {
    const std::string* best = nullptr;
    std::size_t best_d = 0;
    for (const auto& c : candidates) {
        const std::size_t d = edit_distance(wrong, c);
        if (best == nullptr || d < best_d) best = &c, best_d = d;
    }
    if (best != nullptr && best_d <= std::max<std::size_t>(1, wrong.size() / 3))
        return fmt::format(" (did you mean '{}'?)", *best);
    return "";
}

std::string describe(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return fmt::format("the integer {}", *n.value<int64_t>());
        case toml::node_type::floating_point:
            return fmt::format("the number {}", *n.value<double>());
        case toml::node_type::boolean:
            return *n.value<bool>() ? "true" : "false";
        default:
            return "a date or time";
    }
}

// `~/x` → $HOME/x; a relative path → relative to `base` (the registry file's folder).
std::string resolve_relative(const std::string& p, const fs::path& base) {
    if (p.starts_with("~/"))
        if (const char* home = std::getenv("HOME")) return (fs::path(home) / p.substr(2)).string();
    const fs::path path(p);
    if (path.is_absolute() || base.empty()) return path.lexically_normal().string();
    return (base / path).lexically_normal().string();
}

bool has_glob_chars(std::string_view s) {
    return s.find_first_of("*?[") != std::string::npos;
}

bool glob_matches_something(const std::string& pattern) {
    glob_t g{};
    const bool found = ::glob(pattern.c_str(), 0, nullptr, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    return found;
}

DatasetEntry builtin_entry(const std::string& name) {
    DatasetEntry e;
    e.name = name;
    e.format = "txt";
    e.origin = "built-in";
    try {
        e.path = resolve_dataset_path(name);
    } catch (const Error&) {
        e.path.clear();  // resolve_dataset reports the places searched
    }
    return e;
}

DatasetEntry parse_entry(const std::string& file, const std::string& name, const toml::node& node,
                         const fs::path& base) {
    const std::string where = fmt::format("{}: datasets.{}", file, name);
    const toml::table* t = node.as_table();
    if (t == nullptr)
        fail("{}: must be a table [datasets.{}] with path and format, got {}", where, name,
             describe(node));
    if (name.empty() || name.find_first_of(" \t\r\n") != std::string::npos)
        fail("{}: a dataset name must be non-empty and hold no spaces", where);
    for (const char* b : kBuiltinNames)
        if (name == b) fail("{}: '{}' is a built-in dataset name; choose another", where, name);
    DatasetEntry e;
    e.name = name;
    e.origin = file;
    std::string format;
    for (const auto& [k, v] : *t) {
        const std::string key(k.str());
        if (std::find(std::begin(kEntryKeys), std::end(kEntryKeys), key) == std::end(kEntryKeys))
            fail("{}: unknown key '{}'{} (keys: path, format, text_field, tokenizer)", where, key,
                 did_you_mean(key, {std::begin(kEntryKeys), std::end(kEntryKeys)}));
        const auto* s = v.as_string();
        if (s == nullptr) fail("{}.{}: must be a string, got {}", where, key, describe(v));
        const std::string value = s->get();
        if (value.empty()) fail("{}.{}: must not be empty", where, key);
        if (key == "path")
            e.path = resolve_relative(value, base);
        else if (key == "format")
            format = value;
        else if (key == "text_field")
            e.text_field = value;
        else
            e.tokenizer = value == "byte" ? value : resolve_relative(value, base);
    }
    if (e.path.empty())
        fail("{}: missing key 'path' (a file, folder or glob pattern, relative to {})", where,
             base.empty() ? "the current folder" : base.string());
    if (format.empty()) {
        format = format_of_name(e.path);
        if (format.empty())
            fail("{}: missing key 'format' ({}; the path '{}' does not tell)", where,
                 kDatasetFormats, e.path);
    } else if (!is_format(format)) {
        fail("{}.format: unknown format '{}'{} (expected {})", where, format,
             did_you_mean(format, {"txt", "jsonl", "jsonl.zst", "parquet", "shards"}),
             kDatasetFormats);
    }
    e.format = format;
    if (format == "shards" && t->contains("text_field"))
        fail("{}.text_field: token shards have no text field; remove the key", where);
    return e;
}

}  // namespace

const DatasetEntry* DatasetRegistry::find(std::string_view name) const {
    for (const auto& e : entries)
        if (e.name == name) return &e;
    return nullptr;
}

std::string DatasetRegistry::known_names() const {
    std::vector<std::string> builtins, users;
    for (const auto& e : entries) (e.builtin() ? builtins : users).push_back(e.name);
    std::string s = fmt::format("{} (built-in)", fmt::join(builtins, ", "));
    if (file.empty())
        s += "; no registry file (pass --datasets FILE, set AGPT_DATASETS or create "
             "./datasets.toml)";
    else if (users.empty())
        s += fmt::format("; none in {}", file);
    else
        s += fmt::format("; {} ({})", fmt::join(users, ", "), file);
    return s;
}

std::string find_dataset_registry(const std::string& explicit_file, std::string* how) {
    auto found = [&](const std::string& file, const char* from) {
        if (how != nullptr) *how = from;
        return file;
    };
    if (!explicit_file.empty()) {
        if (!fs::is_regular_file(explicit_file))
            fail("dataset registry '{}': no such file", explicit_file);
        return found(explicit_file, "given");
    }
    if (const char* env = std::getenv("AGPT_DATASETS"); env != nullptr && *env != '\0') {
        if (!fs::is_regular_file(env))
            fail("AGPT_DATASETS='{}': no such dataset registry file", env);
        return found(env, "$AGPT_DATASETS");
    }
    if (fs::is_regular_file("datasets.toml")) return found("datasets.toml", "./datasets.toml");
    return found("", "none");
}

DatasetRegistry load_dataset_registry(const std::string& explicit_file) {
    std::string how;
    const std::string file = find_dataset_registry(explicit_file, &how);
    DatasetRegistry reg = read_dataset_registry(file);
    reg.how = how;
    return reg;
}

DatasetRegistry read_dataset_registry(const std::string& file) {
    DatasetRegistry reg;
    reg.file = file;
    for (const char* b : kBuiltinNames) reg.entries.push_back(builtin_entry(b));
    if (file.empty()) return reg;

    std::ifstream in(file, std::ios::binary);
    if (!in || fs::is_directory(file)) fail("{}: cannot open dataset registry file", file);
    std::ostringstream text;
    text << in.rdbuf();
    toml::table root;
    try {
        root = toml::parse(text.str(), file);
    } catch (const toml::parse_error& e) {
        std::string what(e.description());
        std::replace(what.begin(), what.end(), '\n', ' ');  // the error must stay one line
        fail("{}:{}:{}: {}", file, e.source().begin.line, e.source().begin.column, what);
    }
    const fs::path base = fs::path(file).parent_path();
    for (const auto& [k, node] : root) {
        const std::string key(k.str());
        if (key != "datasets")
            fail("{}: unknown key '{}'{} (a dataset registry holds [datasets.NAME] tables)", file,
                 key, did_you_mean(key, {"datasets"}));
        const toml::table* sets = node.as_table();
        if (sets == nullptr)
            fail("{}: 'datasets' must hold [datasets.NAME] tables, got {}", file, describe(node));
        for (const auto& [name, entry] : *sets)
            reg.entries.push_back(parse_entry(file, std::string(name.str()), entry, base));
    }
    return reg;
}

DatasetEntry resolve_dataset(const std::string& value, const DatasetRegistry& registry,
                             std::string_view what) {
    if (const DatasetEntry* e = registry.find(value)) {
        if (e->builtin() && e->path.empty()) resolve_dataset_path(value);  // throws, saying where
        if (!fs::exists(e->path) && !(has_glob_chars(e->path) && glob_matches_something(e->path)))
            fail("{} '{}': no file or folder matches its path '{}' ({})", what, value, e->path,
                 e->origin);
        return *e;
    }
    if (!value.empty() &&
        (fs::exists(value) || (has_glob_chars(value) && glob_matches_something(value)))) {
        DatasetEntry e;
        e.path = value;
        e.origin = "path";
        return e;
    }
    fail("{} '{}': not a dataset name and no such file, folder or glob match (known names: {})",
         what, value, registry.known_names());
}

bool same_tokenizer(const Tokenizer& a, const Tokenizer& b) {
    if (a.vocab_size() != b.vocab_size() || a.eos_id() != b.eos_id() || a.bos_id() != b.bos_id())
        return false;
    // The canonical form is the tokenizer.json each writes into a folder.
    static std::atomic<int> counter{0};
    const fs::path dir =
        fs::temp_directory_path() / fmt::format("agpt_tokenizer_cmp_{}_{}", ::getpid(), counter++);
    auto saved = [&](const Tokenizer& t, const char* sub) {
        const fs::path d = dir / sub;
        fs::create_directories(d);
        t.save_into(d.string());
        std::ifstream in(d / "tokenizer.json", std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        return ss.str();
    };
    bool same = false;
    try {
        same = saved(a, "a") == saved(b, "b");
    } catch (...) {
        fs::remove_all(dir);
        throw;
    }
    fs::remove_all(dir);
    return same;
}

void check_dataset_tokenizer(const DatasetEntry& entry, const Tokenizer& tok,
                             std::string_view what) {
    if (entry.tokenizer.empty()) return;
    if (entry.tokenizer != "byte" && !fs::is_regular_file(entry.tokenizer))
        fail("{}: datasets.{}.tokenizer: '{}': no such file", entry.origin, entry.name,
             entry.tokenizer);
    const Tokenizer expected = Tokenizer::load(entry.tokenizer);
    if (!same_tokenizer(expected, tok))
        fail(
            "{} '{}': its registry entry ({}) is for the tokenizer {} ({} tokens), not this one "
            "({} tokens); use that tokenizer (model.tokenizer / --tokenizer) or change the entry",
            what, entry.name, entry.origin, entry.tokenizer, expected.vocab_size(),
            tok.vocab_size());
}

}  // namespace agpt
