#include "train/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <type_traits>

#include "core/error.h"
#include "model/gpt2.h"
#include "model/model_args.h"
#include "model/model_zoo.h"

namespace agpt {

int JobConfig::grad_accum_steps(int data_parallel_degree) const {
    if (training.global_batch_size == -1 || training.local_batch_size <= 0 ||
        data_parallel_degree <= 0)
        return 1;
    return training.global_batch_size / (training.local_batch_size * data_parallel_degree);
}

namespace {

template <typename T>
constexpr ConfigType type_of() {
    if constexpr (std::is_same_v<T, int>) return ConfigType::Int;
    if constexpr (std::is_same_v<T, long>) return ConfigType::Long;
    if constexpr (std::is_same_v<T, double>) return ConfigType::Double;
    if constexpr (std::is_same_v<T, bool>) return ConfigType::Bool;
    if constexpr (std::is_same_v<T, std::string>) return ConfigType::String;
}

// F is a captureless lambda returning a pointer to the field; the row's type follows from it so
// the table cannot disagree with the struct.
template <typename F>
ConfigKey row(std::string name, F, std::string help) {
    using T = std::remove_pointer_t<decltype(F{}(std::declval<JobConfig&>()))>;
    return ConfigKey{std::move(name), type_of<T>(), std::move(help),
                     [](JobConfig& c) -> ConfigField { return F{}(c); }};
}

std::vector<ConfigKey> make_keys() {
    using C = JobConfig;
    return {
        row(
            "job.name", [](C& c) { return &c.job.name; }, "run name; the run folder's name"),
        row(
            "job.dump_folder", [](C& c) { return &c.job.dump_folder; },
            "folder that holds the run folders"),
        row(
            "job.description", [](C& c) { return &c.job.description; },
            "free text kept with the run"),
        row(
            "job.walltime_deadline", [](C& c) { return &c.job.walltime_deadline; },
            "Unix time by which to save and exit; 0: none"),
        row(
            "model.name", [](C& c) { return &c.model.name; }, "model family: agpt | gpt2"),
        row(
            "model.flavor", [](C& c) { return &c.model.flavor; },
            "size preset from the flavor registry"),
        row(
            "model.init", [](C& c) { return &c.model.init; },
            "initialisation scheme: agpt | torchtitan (agpt family), gpt2 (gpt2 family; its "
            "default)"),
        row(
            "model.tokenizer", [](C& c) { return &c.model.tokenizer; },
            "byte, or a tokenizer.json / tiktoken file"),
        row(
            "model.qk_norm", [](C& c) { return &c.model.qk_norm; },
            "RMSNorm on q and k per head before RoPE (also set by a _qknorm flavor)"),
        row(
            "model.attn_softcap", [](C& c) { return &c.model.attn_softcap; },
            "attention-logit cap c: s -> c·tanh(s/c); 0: the flavor's (_softcap: 30, else off)"),
        row(
            "model.final_softcap", [](C& c) { return &c.model.final_softcap; },
            "LM-head logit cap c: z -> c·tanh(z/c); 0: off"),
        row(
            "model.ffn", [](C& c) { return &c.model.ffn; },
            "FFN: swiglu | relu2 (a _relu2 flavor is relu2 either way)"),
        row(
            "model.aux_loss_alpha", [](C& c) { return &c.model.aux_loss_alpha; },
            "MoE flavors: weight of the sequence-level balance loss (docs/moe.md); 0: off"),
        row(
            "optimizer.name", [](C& c) { return &c.optimizer.name; },
            "AdamW | Muon | Mano | SophiaG | SPAM | Lion | ScheduleFreeAdamW | AdEMAMix; its "
            "own keys follow (agpt optimizers)"),
        row(
            "lr_scheduler.warmup_steps", [](C& c) { return &c.lr_scheduler.warmup_steps; },
            "steps of linear warm-up"),
        row(
            "lr_scheduler.decay_ratio", [](C& c) { return &c.lr_scheduler.decay_ratio; },
            "fraction of the steps spent decaying; -1: all steps after warm-up"),
        row(
            "lr_scheduler.decay_type", [](C& c) { return &c.lr_scheduler.decay_type; },
            "decay shape: linear | sqrt | cosine"),
        row(
            "lr_scheduler.min_lr_factor", [](C& c) { return &c.lr_scheduler.min_lr_factor; },
            "final learning rate as a fraction of lr"),
        row(
            "training.dataset", [](C& c) { return &c.training.dataset; },
            "dataset name (built-in or registry) or path: text, jsonl, parquet, shards"),
        row(
            "training.dataset_registry", [](C& c) { return &c.training.dataset_registry; },
            "dataset registry TOML; empty: $AGPT_DATASETS, else ./datasets.toml"),
        row(
            "training.local_batch_size", [](C& c) { return &c.training.local_batch_size; },
            "sequences per micro-batch"),
        row(
            "training.global_batch_size", [](C& c) { return &c.training.global_batch_size; },
            "sequences per optimizer step; -1: local_batch_size"),
        row(
            "training.seq_len", [](C& c) { return &c.training.seq_len; }, "tokens per sequence"),
        row(
            "training.max_norm", [](C& c) { return &c.training.max_norm; },
            "gradient-norm clipping threshold; <= 0 disables"),
        row(
            "training.steps", [](C& c) { return &c.training.steps; }, "optimizer steps"),
        row(
            "training.seed", [](C& c) { return &c.training.seed; }, "random seed"),
        row(
            "training.threads", [](C& c) { return &c.training.threads; },
            "CPU threads; 0: all cores"),
        row(
            "training.device", [](C& c) { return &c.training.device; },
            "where the model trains: cpu | cuda (one GPU)"),
        row(
            "training.mixed_precision_param",
            [](C& c) { return &c.training.mixed_precision_param; },
            "cuda compute dtype: bfloat16 | float32 (fp32 master weights either way)"),
        row(
            "validation.enable", [](C& c) { return &c.validation.enable; },
            "evaluate on the held-out split"),
        row(
            "validation.split", [](C& c) { return &c.validation.split; },
            "fraction of the corpus held out, taken from its end"),
        row(
            "validation.freq", [](C& c) { return &c.validation.freq; },
            "steps between evaluations"),
        row(
            "validation.steps", [](C& c) { return &c.validation.steps; },
            "batches per evaluation; -1: the whole split"),
        row(
            "metrics.log_freq", [](C& c) { return &c.metrics.log_freq; },
            "steps between log lines"),
        row(
            "metrics.enable_tensorboard", [](C& c) { return &c.metrics.enable_tensorboard; },
            "also write TensorBoard event files"),
        row(
            "metrics.save_tb_folder", [](C& c) { return &c.metrics.save_tb_folder; },
            "TensorBoard folder inside the run folder"),
        row(
            "checkpoint.enable", [](C& c) { return &c.checkpoint.enable; },
            "save checkpoints and resume from them"),
        row(
            "checkpoint.folder", [](C& c) { return &c.checkpoint.folder; },
            "checkpoint folder inside the run folder"),
        row(
            "checkpoint.interval", [](C& c) { return &c.checkpoint.interval; },
            "steps between checkpoints"),
        row(
            "checkpoint.keep_latest_k", [](C& c) { return &c.checkpoint.keep_latest_k; },
            "checkpoints kept; 0: all"),
        row(
            "checkpoint.load_step", [](C& c) { return &c.checkpoint.load_step; },
            "step to resume from; -1: the latest complete one"),
        row(
            "checkpoint.initial_load_path", [](C& c) { return &c.checkpoint.initial_load_path; },
            "checkpoint step folder whose model starts a new run"),
        row(
            "checkpoint.last_save_model_only",
            [](C& c) { return &c.checkpoint.last_save_model_only; },
            "the final checkpoint holds only the model"),
        row(
            "checkpoint.export_dtype", [](C& c) { return &c.checkpoint.export_dtype; },
            "model dtype in checkpoints: float32"),
        row(
            "sample.max_new_tokens", [](C& c) { return &c.sample.max_new_tokens; },
            "tokens to generate"),
        row(
            "sample.temperature", [](C& c) { return &c.sample.temperature; },
            "sampling temperature; 0: greedy"),
        row(
            "sample.top_k", [](C& c) { return &c.sample.top_k; },
            "keep the k most likely tokens; 0: all"),
        row(
            "sample.prompt", [](C& c) { return &c.sample.prompt; }, "text to continue"),
        row(
            "task.name", [](C& c) { return &c.task.name; },
            "RL/SFT task (agpt rl tasks); empty for plain training"),
        row(
            "task.difficulty", [](C& c) { return &c.task.difficulty; },
            "task difficulty; 0: the task's default"),
        row(
            "rl.init", [](C& c) { return &c.rl.init; },
            "run folder whose newest checkpoint (or Hugging Face Llama folder) is the initial "
            "policy"),
        row(
            "rl.group_size", [](C& c) { return &c.rl.group_size; },
            "completions sampled per prompt (G)"),
        row(
            "rl.prompts_per_step", [](C& c) { return &c.rl.prompts_per_step; },
            "prompts per GRPO step"),
        row(
            "rl.temperature", [](C& c) { return &c.rl.temperature; }, "sampling temperature"),
        row(
            "rl.clip_eps", [](C& c) { return &c.rl.clip_eps; },
            "clip range of the policy ratio: [1-eps, 1+eps]"),
        row(
            "rl.kl_coef", [](C& c) { return &c.rl.kl_coef; },
            "weight of the KL penalty (k3 estimator) to the initial model"),
        row(
            "rl.epochs_per_batch", [](C& c) { return &c.rl.epochs_per_batch; },
            "optimizer steps on each sampled batch"),
        row(
            "rl.max_new_tokens", [](C& c) { return &c.rl.max_new_tokens; },
            "longest completion sampled"),
        row(
            "rl.eval_n", [](C& c) { return &c.rl.eval_n; },
            "held-out prompts scored (greedy) at the start and end; 0: none"),
        row(
            "activation_checkpoint.mode", [](C& c) { return &c.activation_checkpoint.mode; },
            "none (keep every layer's activations) | full (keep each layer's input, recompute "
            "its forward in backward)"),
        row(
            "parallelism.data_parallel_degree",
            [](C& c) { return &c.parallelism.data_parallel_degree; },
            "data-parallel ranks; -1: the world size over the other degrees"),
        row(
            "parallelism.zero", [](C& c) { return &c.parallelism.zero; },
            "ZeRO stage: 0 (replicated optimizer state) or 1 (sharded over data ranks)"),
        row(
            "parallelism.tensor_parallel_degree",
            [](C& c) { return &c.parallelism.tensor_parallel_degree; },
            "tensor-parallel ranks (Megatron-style)"),
        row(
            "parallelism.expert_parallel_degree",
            [](C& c) { return &c.parallelism.expert_parallel_degree; },
            "expert-parallel ranks (MoE flavors)"),
        row(
            "parallelism.bucket_mb", [](C& c) { return &c.parallelism.bucket_mb; },
            "gradient all-reduce bucket size in MiB"),
        row(
            "parallelism.overlap_grad_reduce",
            [](C& c) { return &c.parallelism.overlap_grad_reduce; },
            "start each bucket's all-reduce as soon as backward has finished it (ZeRO-0)"),
    };
}

// ---- text helpers ----

// Optimal string alignment distance: a swapped pair of letters, the commonest typo, costs 1.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    const std::size_t n = a.size(), m = b.size();
    std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
    for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= n; ++i) {
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[n][m];
}

// " (did you mean 'x'?)" for the closest candidate when it is close enough to be a typo, else "".
std::string did_you_mean(std::string_view wrong, const std::vector<std::string>& candidates) {
    const std::string* best = nullptr;
    std::size_t best_d = std::numeric_limits<std::size_t>::max();
    for (const std::string& c : candidates) {
        const std::size_t d = edit_distance(wrong, c);
        if (d < best_d) best_d = d, best = &c;
    }
    if (best == nullptr || best_d == 0) return "";
    if (best_d <= 2 || best_d * 3 <= best->size())
        return fmt::format(" (did you mean '{}'?)", *best);
    return "";
}

std::vector<std::string> key_names() {
    std::vector<std::string> names;
    for (const ConfigKey& k : config_keys()) names.push_back(k.name);
    return names;
}

std::vector<std::string> section_names() {
    std::vector<std::string> names;
    for (const ConfigKey& k : config_keys()) {
        if (names.empty() || names.back() != k.section()) names.emplace_back(k.section());
    }
    return names;
}

bool is_section(std::string_view s) {
    const auto names = section_names();
    return std::find(names.begin(), names.end(), s) != names.end();
}

std::string key_suggestion(std::string_view wrong) {
    std::string s = did_you_mean(wrong, key_names());
    if (!s.empty()) return s;
    // The right key name under the wrong section: torchtitan has moved keys between sections
    // (e.g. warmup_steps from [training] to [lr_scheduler]).
    const std::string_view leaf = wrong.substr(wrong.rfind('.') + 1);
    std::vector<std::string> same_leaf;
    for (const ConfigKey& k : config_keys()) {
        if (k.leaf() == leaf && k.name != wrong) same_leaf.push_back(fmt::format("'{}'", k.name));
    }
    if (same_leaf.empty()) return "";
    return fmt::format(" (did you mean {}?)", fmt::join(same_leaf, " or "));
}

// Single-quoted for messages, with control characters escaped so the error stays one line.
std::string in_quotes(std::string_view s) {
    std::string out = "'";
    for (const unsigned char c : s) {
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c == '\r')
            out += "\\r";
        else if (c < 0x20 || c == 0x7f)
            out += fmt::format("\\x{:02x}", c);
        else
            out += static_cast<char>(c);
    }
    return out + "'";
}

// TOML basic string; its escapes cover every control character, so any valid UTF-8 text
// survives the round trip.
std::string toml_quote(std::string_view s) {
    std::string out = "\"";
    for (const unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (c < 0x20 || c == 0x7f)
                    out += fmt::format("\\u{:04X}", c);
                else
                    out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        unsigned cp = 0;
        if (c < 0x80)
            len = 1, cp = c;
        else if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07;
        else
            return false;
        if (i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        static constexpr unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

std::string format_double(double v) {
    std::string s = fmt::format("{}", v);
    // "1" would read back as a TOML integer; keep it a float.
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
}

std::string describe(const toml::node& n) {
    if (auto v = n.as_integer()) return fmt::format("{}", v->get());
    if (auto v = n.as_floating_point()) return format_double(v->get());
    if (auto v = n.as_boolean()) return v->get() ? "true" : "false";
    if (auto v = n.as_string()) return toml_quote(v->get());
    if (n.is_table()) return "a table";
    if (n.is_array()) return "an array";
    return "a date/time";
}

// ---- assigning one value; each returns the problem, or "" when the value was stored ----

template <typename Int>
std::string store_integer(Int* field, std::int64_t v) {
    if (v < std::numeric_limits<Int>::min() || v > std::numeric_limits<Int>::max())
        return fmt::format("{} is out of range", v);
    *field = static_cast<Int>(v);
    return "";
}

std::string store_double(double* field, double v) {
    if (!std::isfinite(v)) return fmt::format("expected a finite number, got {}", v);
    *field = v;
    return "";
}

std::string assign_from_toml(const ConfigKey& key, JobConfig& cfg, const toml::node& n) {
    return std::visit(
        [&](auto* field) -> std::string {
            using T = std::remove_pointer_t<decltype(field)>;
            if constexpr (std::is_same_v<T, int> || std::is_same_v<T, long>) {
                if (auto v = n.as_integer()) return store_integer(field, v->get());
                return "expected an integer, got " + describe(n);
            } else if constexpr (std::is_same_v<T, double>) {
                if (auto v = n.as_floating_point()) return store_double(field, v->get());
                if (auto v = n.as_integer()) return store_double(field, double(v->get()));
                return "expected a number, got " + describe(n);
            } else if constexpr (std::is_same_v<T, bool>) {
                if (auto v = n.as_boolean()) {
                    *field = v->get();
                    return "";
                }
                return "expected true or false, got " + describe(n);
            } else {
                if (auto v = n.as_string()) {
                    *field = v->get();
                    return "";
                }
                return "expected a string, got " + describe(n);
            }
        },
        key.field(cfg));
}

// from_chars refuses a leading '+', which people type for exponents' sake; allow it.
std::string_view strip_plus(std::string_view s) {
    return s.size() > 1 && s[0] == '+' && s[1] != '-' ? s.substr(1) : s;
}

std::string assign_from_text(const ConfigKey& key, JobConfig& cfg, const std::string& text) {
    return std::visit(
        [&](auto* field) -> std::string {
            using T = std::remove_pointer_t<decltype(field)>;
            const std::string_view s = strip_plus(text);
            const char* end = s.data() + s.size();
            if constexpr (std::is_same_v<T, int> || std::is_same_v<T, long>) {
                std::int64_t v = 0;
                const auto [p, ec] = std::from_chars(s.data(), end, v);
                if (ec == std::errc::result_out_of_range && p == end)
                    return fmt::format("{} is out of range", text);
                if (ec != std::errc() || p != end || s.empty())
                    return fmt::format("expected an integer, got {}", in_quotes(text));
                return store_integer(field, v);
            } else if constexpr (std::is_same_v<T, double>) {
                double v = 0;
                const auto [p, ec] = std::from_chars(s.data(), end, v);
                if (ec == std::errc::result_out_of_range && p == end)
                    return fmt::format("{} is out of range", text);
                if (ec != std::errc() || p != end || s.empty())
                    return fmt::format("expected a number, got {}", in_quotes(text));
                return store_double(field, v);
            } else if constexpr (std::is_same_v<T, bool>) {
                if (text == "true" || text == "1") {
                    *field = true;
                    return "";
                }
                if (text == "false" || text == "0") {
                    *field = false;
                    return "";
                }
                return fmt::format("expected true, false, 1 or 0, got {}", in_quotes(text));
            } else {
                if (!valid_utf8(text)) return "expected UTF-8 text";
                {
                    *field = text;
                    return "";
                }
            }
        },
        key.field(cfg));
}

// ---- where each value came from, so a validation error can name the file ----

enum class Source { File, Override };
using Sources = std::map<std::string, Source, std::less<>>;

// An [optimizer] / [optimizer.adamw] value as given. Its type is checked once the optimizer's
// name, which may come later (from an override), is known.
struct RawHyper {
    Source source = Source::File;
    std::optional<double> number;    // a TOML integer or float
    bool is_integer = false;         // ... that was written as an integer
    std::optional<bool> boolean;     // a TOML boolean
    std::optional<std::string> str;  // a TOML string, or an override's text
    std::string described;           // the value as written, for messages
};
using RawHypers = std::map<std::string, RawHyper>;  // "optimizer.lr", "optimizer.adamw.eps"

RawHyper raw_from_toml(const toml::node& n) {
    RawHyper r;
    if (auto v = n.as_integer()) r.number = double(v->get()), r.is_integer = true;
    if (auto v = n.as_floating_point()) r.number = v->get();
    if (auto v = n.as_boolean()) r.boolean = v->get();
    if (auto v = n.as_string()) r.str = v->get();
    r.described = describe(n);
    return r;
}

void apply_file(JobConfig& cfg, const std::string& path, Sources& sources, RawHypers& hypers) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        fail("{}: cannot open file (it is a directory)", path);
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open file", path);
    std::ostringstream text;
    text << in.rdbuf();

    toml::table root;
    try {
        root = toml::parse(text.str(), path);
    } catch (const toml::parse_error& e) {
        std::string what(e.description());
        std::replace(what.begin(), what.end(), '\n', ' ');  // the error must stay one line
        fail("{}:{}:{}: {}", path, e.source().begin.line, e.source().begin.column, what);
    }
    for (const auto& [sec_key, sec_node] : root) {
        const std::string_view sec = sec_key.str();
        if (!is_section(sec)) {
            if (sec_node.is_table())
                fail("{}: unknown section {}{}", path, in_quotes(sec),
                     did_you_mean(sec, section_names()));
            fail("{}: unknown key {}{}", path, in_quotes(sec), key_suggestion(sec));
        }
        const toml::table* table = sec_node.as_table();
        if (table == nullptr)
            fail("{}: '{}' must be a section [{}], got {}", path, sec, sec, describe(sec_node));
        for (const auto& [k, node] : *table) {
            const std::string name = fmt::format("{}.{}", sec, k.str());
            if (sec == "optimizer" && name != "optimizer.name") {
                if (k.str() == "adamw" && node.is_table()) {
                    for (const auto& [ak, anode] : *node.as_table()) {
                        const std::string aname = fmt::format("optimizer.adamw.{}", ak.str());
                        if (anode.is_table()) fail("{}: unknown section '{}'", path, aname);
                        hypers[aname] = raw_from_toml(anode);
                        sources[aname] = Source::File;
                    }
                    continue;
                }
                if (node.is_table()) fail("{}: unknown section '{}'", path, name);
                hypers[name] = raw_from_toml(node);
                sources[name] = Source::File;
                continue;
            }
            const ConfigKey* key = find_config_key(name);
            if (key == nullptr)
                fail("{}: unknown key {}{}", path, in_quotes(name), key_suggestion(name));
            if (std::string problem = assign_from_toml(*key, cfg, node); !problem.empty())
                fail("{}: {}: {}", path, name, problem);
            sources[name] = Source::File;
        }
    }
}

void apply_override(JobConfig& cfg, std::string_view name, const std::string& value,
                    Sources& sources, RawHypers& hypers) {
    if (name.starts_with("--")) name.remove_prefix(2);
    if (name.starts_with("optimizer.") && name != "optimizer.name") {
        RawHyper r;
        r.source = Source::Override;
        r.str = value;
        r.described = in_quotes(value);
        hypers[std::string(name)] = std::move(r);
        sources[std::string(name)] = Source::Override;
        return;
    }
    const ConfigKey* key = find_config_key(name);
    if (key == nullptr) fail("--{}: unknown key {}{}", name, in_quotes(name), key_suggestion(name));
    if (std::string problem = assign_from_text(*key, cfg, value); !problem.empty())
        fail("--{}: {}", name, problem);
    sources[key->name] = Source::Override;
}

// ---- the optimizer's own keys ----

// Where a message about the key starts: the file for a file's value, "--key" for an override's.
std::string prefix_of(const std::string& name, const RawHyper& raw, const std::string& path) {
    return raw.source == Source::File ? path + ": " : "--" + name + ": ";
}

// The raw value as the key's kind; "" when stored, else the problem.
std::string convert_hyper(const HyperKey& key, const RawHyper& raw, HyperValue& out) {
    const bool text = raw.source == Source::Override;
    const std::string_view s = text ? strip_plus(*raw.str) : std::string_view();
    switch (key.kind) {
        case HyperKind::kNumber: {
            double v = 0;
            if (text) {
                const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
                if (ec != std::errc() || p != s.data() + s.size() || s.empty())
                    return "expected a number, got " + raw.described;
            } else if (raw.number) {
                v = *raw.number;
            } else {
                return "expected a number, got " + raw.described;
            }
            if (!std::isfinite(v)) return fmt::format("expected a finite number, got {}", v);
            out = v;
            return "";
        }
        case HyperKind::kInteger: {
            std::int64_t v = 0;
            if (text) {
                const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
                if (ec != std::errc() || p != s.data() + s.size() || s.empty())
                    return "expected an integer, got " + raw.described;
            } else if (raw.number && raw.is_integer) {
                v = static_cast<std::int64_t>(*raw.number);
            } else {
                return "expected an integer, got " + raw.described;
            }
            out = static_cast<double>(v);
            return "";
        }
        case HyperKind::kBool:
            if (text && (*raw.str == "true" || *raw.str == "1")) return out = 1.0, "";
            if (text && (*raw.str == "false" || *raw.str == "0")) return out = 0.0, "";
            if (!text && raw.boolean) return out = *raw.boolean ? 1.0 : 0.0, "";
            return (text ? "expected true, false, 1 or 0, got " : "expected true or false, got ") +
                   raw.described;
        case HyperKind::kChoice: {
            std::string v;
            if (raw.str)
                v = *raw.str;
            else if (raw.number && raw.is_integer)
                v = fmt::format("{}", static_cast<std::int64_t>(*raw.number));  // version = 2
            if (std::find(key.choices.begin(), key.choices.end(), v) == key.choices.end())
                return fmt::format("expected one of {}, got {}", fmt::join(key.choices, ", "),
                                   raw.described);
            out = v;
            return "";
        }
    }
    return "unknown kind";
}

void resolve_optimizer(JobConfig& cfg, const RawHypers& hypers, const std::string& path,
                       const Sources& sources) {
    auto& o = cfg.optimizer;
    std::vector<std::string> names;
    for (const auto& info : optimizer_registry()) names.push_back(info.name);
    const OptimizerInfo* info = nullptr;
    try {
        info = &optimizer_info(o.name);  // exact, then case-insensitive
    } catch (const Error&) {
    }
    if (info == nullptr) {
        const auto it = sources.find("optimizer.name");
        const std::string where = it == sources.end()              ? ""
                                  : it->second == Source::Override ? "--optimizer.name: "
                                                                   : path + ": ";
        fail("{}optimizer.name = {} is not a known optimizer{}; known: {}", where,
             in_quotes(o.name), did_you_mean(o.name, names), fmt::join(names, ", "));
    }
    o.name = info->name;
    o.hyper.clear();
    o.adamw.clear();
    for (const auto& [name, raw] : hypers) {
        const std::string prefix = prefix_of(name, raw, path);
        // "file: key: problem" or "--key: problem", as for the table's keys.
        const std::string head = raw.source == Source::File ? prefix + name + ": " : prefix;
        const bool routed = name.starts_with("optimizer.adamw.");
        const std::string leaf = name.substr(routed ? 16 : 10);
        if (routed && !info->routes_to_adamw)
            fail(
                "{}{} routes no parameter to AdamW, so [optimizer.adamw] has no effect; "
                "remove it",
                head, info->name);
        const auto& keys = routed ? routed_adamw_keys() : info->keys;
        const auto key = std::find_if(keys.begin(), keys.end(),
                                      [&](const HyperKey& k) { return k.key == leaf; });
        if (key == keys.end()) {
            std::vector<std::string> known, leaves;
            for (const auto& k : keys) {
                known.push_back(fmt::format("optimizer.{}{}", routed ? "adamw." : "", k.key));
                leaves.push_back(k.key);
            }
            std::string hint = did_you_mean(leaf, leaves);
            if (!hint.empty())  // judged on the leaf: the shared prefix would make any key close
                hint = did_you_mean(name, known);
            if (hint.empty())
                hint = fmt::format(" ({} takes: {})", routed ? "[optimizer.adamw]" : info->name,
                                   fmt::join(known, ", "));
            fail("{}unknown key {}{}", prefix, in_quotes(name), hint);
        }
        HyperValue value;
        if (std::string problem = convert_hyper(*key, raw, value); !problem.empty())
            fail("{}{}", head, problem);
        (routed ? o.adamw : o.hyper)[leaf] = value;
    }
    // The built-in job's lr is AdamW's; another optimizer starts from its own default.
    if (info->name == "AdamW" && !hypers.count("optimizer.lr"))
        o.hyper["lr"] = JobConfig{}.optimizer.hyper.at("lr");
}

// Every key of the chosen optimizer with its value, defaults included, so a run's config.toml
// states what ran; the [optimizer.adamw] sub-table follows where the optimizer routes to AdamW.
// It is written as part of [optimizer]: TOML allows a sub-table before the next section.
std::string optimizer_keys_to_toml(const JobConfig::Optimizer& o) {
    const OptimizerInfo& info = optimizer_info(o.name);
    auto lines = [](const std::vector<HyperKey>& keys, const Hyper& h) {
        std::string out;
        for (const HyperKey& k : keys) {
            const HyperValue& v = h.value(k.key);
            std::string text;
            if (const auto* str = std::get_if<std::string>(&v))
                text = toml_quote(*str);
            else if (k.kind == HyperKind::kBool)
                text = std::get<double>(v) != 0.0 ? "true" : "false";
            else if (k.kind == HyperKind::kInteger)
                text = fmt::format("{}", static_cast<std::int64_t>(std::get<double>(v)));
            else
                text = format_double(std::get<double>(v));
            out += fmt::format("{} = {}\n", k.key, text);
        }
        return out;
    };
    std::string out = lines(info.keys, Hyper("optimizer", info.keys, o.hyper));
    if (info.routes_to_adamw)
        out += "\n[optimizer.adamw]\n" +
               lines(routed_adamw_keys(), Hyper("optimizer.adamw", routed_adamw_keys(), o.adamw));
    return out;
}

// ---- validation ----

template <typename T>
std::string show(const T& v) {
    if constexpr (std::is_same_v<T, std::string>)
        return in_quotes(v);
    else if constexpr (std::is_same_v<T, double>)
        return format_double(v);
    else
        return fmt::format("{}", v);
}

class Checker {
  public:
    Checker(const std::string* path, const Sources* sources) : path_(path), sources_(sources) {}

    // The file is named only when it set the offending value: a value given on the command
    // line, or left at its default, is not the file's fault.
    [[noreturn]] void fail(const std::vector<std::string_view>& keys,
                           const std::string& msg) const {
        bool from_file = false, from_override = false;
        if (sources_ != nullptr) {
            for (std::string_view k : keys) {
                if (auto it = sources_->find(k); it != sources_->end()) {
                    (it->second == Source::File ? from_file : from_override) = true;
                }
            }
        }
        if (from_file && !from_override && path_ != nullptr) throw Error(*path_ + ": " + msg);
        throw Error(msg);
    }

    template <typename T>
    void need(bool ok, std::string_view key, const T& value, std::string_view rule) const {
        if (!ok) fail({key}, fmt::format("{} = {} {}", key, show(value), rule));
    }

    void one_of(std::string_view key, const std::string& value,
                const std::vector<std::string>& allowed) const {
        if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
        fail({key}, fmt::format("{} = {} must be one of: {}{}", key, in_quotes(value),
                                fmt::join(allowed, ", "), did_you_mean(value, allowed)));
    }

  private:
    const std::string* path_;
    const Sources* sources_;
};

// Bounds every optimizer shares by key name, with the same messages as the other keys; the
// rest the optimizer's own constructor checks (built here on no parameters).
void check_optimizer(const JobConfig::Optimizer& o, const Checker& c) {
    std::vector<std::string> names;
    for (const auto& i : optimizer_registry()) names.push_back(i.name);
    if (std::find(names.begin(), names.end(), o.name) == names.end())
        c.fail({"optimizer.name"},
               fmt::format("optimizer.name = {} is not a known optimizer{}; known: {}",
                           in_quotes(o.name), did_you_mean(o.name, names), fmt::join(names, ", ")));
    std::vector<std::string_view> given;
    auto check = [&](const std::string& section, const std::map<std::string, HyperValue>& m) {
        for (const auto& [leaf, value] : m) {
            const std::string key = section + leaf;
            given.push_back(key);
            const double* v = std::get_if<double>(&value);
            if (v == nullptr) continue;
            if (leaf == "lr") c.need(*v > 0, key, *v, "must be positive");
            if (leaf == "eps") c.need(*v > 0, key, *v, "must be positive");
            if (leaf.starts_with("beta")) c.need(*v >= 0 && *v < 1, key, *v, "must be in [0, 1)");
            if (leaf == "weight_decay") c.need(*v >= 0, key, *v, "must be >= 0");
        }
    };
    check("optimizer.", o.hyper);
    check("optimizer.adamw.", o.adamw);
    try {
        make_optimizer(o.spec(), {});
    } catch (const Error& e) {
        std::vector<std::string_view> keys = given;
        keys.push_back("optimizer.name");
        c.fail(keys, e.what());
    }
}

void validate_agpt_model(const JobConfig::Model& m, const Checker& c) {
    const Flavor* flavor = find_flavor(m.flavor);
    if (flavor == nullptr) {
        std::vector<std::string> known;
        for (const Flavor& f : agpt_flavors()) known.push_back(f.name);
        c.fail({"model.flavor"}, fmt::format("model.flavor = {} is not a known flavor{}; known: {}",
                                             in_quotes(m.flavor), did_you_mean(m.flavor, known),
                                             fmt::join(known, ", ")));
    }
    const ModelArgs& a = flavor->args;
    if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0) {
        c.fail({"model.flavor"},
               fmt::format("model.flavor = {}: n_heads = {} is not divisible by n_kv_heads = {}",
                           in_quotes(m.flavor), a.n_heads, a.n_kv_heads));
    }
    c.one_of("model.init", m.init, {"agpt", "torchtitan"});
    c.need(m.attn_softcap >= 0, "model.attn_softcap", m.attn_softcap,
           "must be 0 (the flavor's) or a positive cap");
    c.need(m.final_softcap >= 0, "model.final_softcap", m.final_softcap,
           "must be 0 (off) or a positive cap");
    c.one_of("model.ffn", m.ffn, {"swiglu", "relu2"});
    c.need(m.aux_loss_alpha >= 0 && std::isfinite(m.aux_loss_alpha), "model.aux_loss_alpha",
           m.aux_loss_alpha, "must be 0 (off) or a positive weight");
    c.need(m.aux_loss_alpha == 0 || flavor->args.is_moe(), "model.aux_loss_alpha", m.aux_loss_alpha,
           "needs a MoE flavor (agpt models: moe_*)");
}

// GPT-2 has no switches and a learned position table of a fixed length.
void validate_gpt2_model(const JobConfig& cfg, const Checker& c) {
    const auto& m = cfg.model;
    const Gpt2Flavor* flavor = find_gpt2_flavor(m.flavor);
    if (flavor == nullptr) {
        const std::vector<std::string> known = family_flavors("gpt2");
        c.fail({"model.flavor"}, fmt::format("model.flavor = {} is not a gpt2 flavor{}; known: {}",
                                             in_quotes(m.flavor), did_you_mean(m.flavor, known),
                                             fmt::join(known, ", ")));
    }
    const JobConfig::Model plain;
    for (const auto& [key, is_set] :
         {std::pair{"model.qk_norm", m.qk_norm != plain.qk_norm},
          std::pair{"model.attn_softcap", m.attn_softcap != plain.attn_softcap},
          std::pair{"model.final_softcap", m.final_softcap != plain.final_softcap},
          std::pair{"model.ffn", m.ffn != plain.ffn},
          std::pair{"model.aux_loss_alpha", m.aux_loss_alpha != plain.aux_loss_alpha}})
        if (is_set)
            c.fail({key, "model.name"},
                   fmt::format("{} is an agpt switch; the gpt2 family has none", key));
    c.one_of("model.init", m.init, family_init_schemes("gpt2"));
    if (cfg.activation_checkpoint.mode == "full")
        c.fail({"activation_checkpoint.mode", "model.name"},
               "activation_checkpoint.mode = 'full' is implemented for model.name = agpt only");
    const int context = flavor->args.max_seq_len;
    c.need(cfg.training.seq_len <= context, "training.seq_len", cfg.training.seq_len,
           fmt::format("exceeds the context of gpt2 flavor {} ({} positions)", m.flavor, context));
}

void validate(const JobConfig& cfg, const Checker& c) {
    // Checks every key of a type shares, so a new row in the table gets them for free.
    JobConfig copy = cfg;
    for (const ConfigKey& k : config_keys()) {
        const ConfigField f = k.field(copy);
        if (auto d = std::get_if<double*>(&f); d && !std::isfinite(**d))
            c.fail({k.name}, fmt::format("{} = {} must be a finite number", k.name, **d));
        if (auto s = std::get_if<std::string*>(&f); s && !valid_utf8(**s))
            c.fail({k.name}, fmt::format("{} must be UTF-8 text", k.name));
    }

    const auto& job = cfg.job;
    c.need(!job.name.empty(), "job.name", job.name, "must not be empty");
    c.need(job.name != "." && job.name != "..", "job.name", job.name,
           "is not a usable folder name");
    c.need(job.name.find_first_of(std::string_view("/\0", 2)) == std::string::npos, "job.name",
           job.name, "must not contain '/' (it names the run folder)");

    const auto& m = cfg.model;
    c.one_of("model.name", m.name, model_families());
    c.one_of("activation_checkpoint.mode", cfg.activation_checkpoint.mode, {"none", "full"});
    if (m.name == "gpt2") {
        validate_gpt2_model(cfg, c);
    } else {
        validate_agpt_model(m, c);
    }
    c.need(m.tokenizer == "byte" || std::filesystem::is_regular_file(m.tokenizer),
           "model.tokenizer", m.tokenizer,
           "must be 'byte' or the path of a tokenizer.json / tiktoken file");

    check_optimizer(cfg.optimizer, c);

    const auto& s = cfg.lr_scheduler;
    c.need(s.warmup_steps >= 0, "lr_scheduler.warmup_steps", s.warmup_steps, "must be >= 0");
    c.need(s.decay_ratio == -1.0 || (s.decay_ratio >= 0 && s.decay_ratio <= 1),
           "lr_scheduler.decay_ratio", s.decay_ratio, "must be -1 (none) or in [0, 1]");
    c.one_of("lr_scheduler.decay_type", s.decay_type, {"linear", "sqrt", "cosine"});
    c.need(s.min_lr_factor >= 0 && s.min_lr_factor <= 1, "lr_scheduler.min_lr_factor",
           s.min_lr_factor, "must be in [0, 1]");

    const auto& t = cfg.training;
    c.need(!t.dataset.empty(), "training.dataset", t.dataset, "must not be empty");
    c.need(t.local_batch_size > 0, "training.local_batch_size", t.local_batch_size,
           "must be positive");
    if (t.global_batch_size != -1) {
        c.need(t.global_batch_size > 0, "training.global_batch_size", t.global_batch_size,
               "must be positive or -1 (= local_batch_size)");
        if (t.global_batch_size % t.local_batch_size != 0) {
            c.fail({"training.global_batch_size", "training.local_batch_size"},
                   fmt::format("training.global_batch_size = {} is not a multiple of "
                               "training.local_batch_size = {}",
                               t.global_batch_size, t.local_batch_size));
        }
    }
    c.need(t.seq_len > 0, "training.seq_len", t.seq_len, "must be positive");
    c.need(t.steps > 0, "training.steps", t.steps, "must be positive");
    c.need(t.threads >= 0, "training.threads", t.threads, "must be >= 0 (0: all cores)");
    c.one_of("training.device", t.device, {"cpu", "cuda"});
    c.one_of("training.mixed_precision_param", t.mixed_precision_param, {"bfloat16", "float32"});

    const auto& v = cfg.validation;
    c.need(v.split > 0 && v.split < 1, "validation.split", v.split, "must be in (0, 1)");
    c.need(v.freq > 0, "validation.freq", v.freq, "must be positive");
    c.need(v.steps > 0 || v.steps == -1, "validation.steps", v.steps,
           "must be positive or -1 (the whole split)");

    const auto& tb = cfg.metrics.save_tb_folder;
    c.need(!tb.empty() && tb.find('/') == std::string::npos && tb != "." && tb != "..",
           "metrics.save_tb_folder", tb, "must be a plain folder name");

    const auto& k = cfg.checkpoint;
    c.need(!k.folder.empty() && k.folder.find('/') == std::string::npos && k.folder != "." &&
               k.folder != "..",
           "checkpoint.folder", k.folder, "must be a plain folder name");
    c.need(k.interval > 0, "checkpoint.interval", k.interval, "must be positive");
    c.need(k.keep_latest_k >= 0, "checkpoint.keep_latest_k", k.keep_latest_k,
           "must be >= 0 (0: keep all)");
    c.need(k.load_step >= -1, "checkpoint.load_step", k.load_step,
           "must be a step number or -1 (the latest)");
    c.one_of("checkpoint.export_dtype", k.export_dtype, {"float32"});
    c.need(cfg.job.walltime_deadline >= 0, "job.walltime_deadline", cfg.job.walltime_deadline,
           "must be a Unix time or 0 (none)");

    c.need(cfg.metrics.log_freq > 0, "metrics.log_freq", cfg.metrics.log_freq, "must be positive");

    const auto& p = cfg.sample;
    c.need(p.max_new_tokens >= 0, "sample.max_new_tokens", p.max_new_tokens, "must be >= 0");
    c.need(p.temperature >= 0, "sample.temperature", p.temperature, "must be >= 0 (0: greedy)");
    c.need(p.top_k >= 0, "sample.top_k", p.top_k, "must be >= 0 (0: no filtering)");

    c.need(cfg.task.difficulty >= 0, "task.difficulty", cfg.task.difficulty,
           "must be >= 0 (0: the task's default)");
    const auto& r = cfg.rl;
    c.need(r.group_size >= 2, "rl.group_size", r.group_size,
           "must be >= 2 (advantages compare completions within a group)");
    c.need(r.prompts_per_step > 0, "rl.prompts_per_step", r.prompts_per_step, "must be positive");
    c.need(r.temperature > 0, "rl.temperature", r.temperature, "must be positive");
    c.need(r.clip_eps > 0 && r.clip_eps < 1, "rl.clip_eps", r.clip_eps, "must be in (0, 1)");
    c.need(r.kl_coef >= 0, "rl.kl_coef", r.kl_coef, "must be >= 0");
    c.need(r.epochs_per_batch > 0, "rl.epochs_per_batch", r.epochs_per_batch, "must be positive");
    c.need(r.max_new_tokens > 0, "rl.max_new_tokens", r.max_new_tokens, "must be positive");
    c.need(r.eval_n >= 0, "rl.eval_n", r.eval_n, "must be >= 0");
    const auto& par = cfg.parallelism;
    c.need(par.data_parallel_degree > 0 || par.data_parallel_degree == -1,
           "parallelism.data_parallel_degree", par.data_parallel_degree,
           "must be positive or -1 (inferred from the world size)");
    c.need(par.zero == 0 || par.zero == 1, "parallelism.zero", par.zero, "must be 0 or 1");
    c.need(par.tensor_parallel_degree > 0, "parallelism.tensor_parallel_degree",
           par.tensor_parallel_degree, "must be positive");
    c.need(par.expert_parallel_degree > 0, "parallelism.expert_parallel_degree",
           par.expert_parallel_degree, "must be positive");
    c.need(par.bucket_mb > 0, "parallelism.bucket_mb", par.bucket_mb, "must be positive");
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
    static const std::vector<ConfigKey> keys = make_keys();
    return keys;
}

const ConfigKey* find_config_key(std::string_view name) {
    for (const ConfigKey& k : config_keys()) {
        if (k.name == name) return &k;
    }
    return nullptr;
}

const char* config_type_name(ConfigType type) {
    switch (type) {
        case ConfigType::Int:
        case ConfigType::Long:
            return "integer";
        case ConfigType::Double:
            return "float";
        case ConfigType::Bool:
            return "boolean";
        case ConfigType::String:
            return "string";
    }
    return "?";
}

std::string config_value_to_toml(const JobConfig& cfg, const ConfigKey& key) {
    JobConfig copy = cfg;  // the accessor hands out non-const pointers
    return std::visit(
        [](auto* field) -> std::string {
            using T = std::remove_pointer_t<decltype(field)>;
            if constexpr (std::is_same_v<T, std::string>)
                return toml_quote(*field);
            else if constexpr (std::is_same_v<T, double>)
                return format_double(*field);
            else if constexpr (std::is_same_v<T, bool>)
                return *field ? "true" : "false";
            else
                return fmt::format("{}", *field);
        },
        key.field(copy));
}

ConfigOverrides parse_override_args(const std::vector<std::string>& args) {
    ConfigOverrides out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (!arg.starts_with("--"))
            fail("{}: expected --section.key value or --section.key=value", in_quotes(arg));
        std::string name = arg.substr(2), value;
        if (const auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name.resize(eq);
        } else {
            // A following option means the value was forgotten; a value that really starts with
            // "--" can still be given with '='.
            if (i + 1 == args.size() || args[i + 1].starts_with("--"))
                fail("{}: missing value", in_quotes(arg));
            value = args[++i];
        }
        const auto dot = name.find('.');
        if (dot == std::string::npos || dot == 0 || dot + 1 == name.size())
            fail("{}: expected --section.key, e.g. --training.steps", in_quotes(arg));
        out.emplace_back(std::move(name), std::move(value));
    }
    return out;
}

JobConfig load_job_config(const std::string& toml_path, const ConfigOverrides& overrides) {
    JobConfig cfg;
    Sources sources;
    RawHypers hypers;
    if (!toml_path.empty()) apply_file(cfg, toml_path, sources, hypers);
    for (const auto& [name, value] : overrides) apply_override(cfg, name, value, sources, hypers);
    resolve_optimizer(cfg, hypers, toml_path, sources);
    // Each family has its own default initialisation.
    if (!sources.contains("model.init")) cfg.model.init = family_init_schemes(cfg.model.name)[0];
    validate(cfg, Checker(toml_path.empty() ? nullptr : &toml_path, &sources));
    return cfg;
}

void validate_job_config(const JobConfig& cfg) {
    validate(cfg, Checker(nullptr, nullptr));
}

std::string job_config_to_toml(const JobConfig& cfg) {
    std::string out;
    std::string_view section;
    for (const ConfigKey& k : config_keys()) {
        if (k.section() != section) {
            section = k.section();
            out += fmt::format("{}[{}]\n", out.empty() ? "" : "\n", section);
        }
        out += fmt::format("{} = {}\n", k.leaf(), config_value_to_toml(cfg, k));
        if (k.name == "optimizer.name") out += optimizer_keys_to_toml(cfg.optimizer);
    }
    return out;
}

}  // namespace agpt
