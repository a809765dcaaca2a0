#include "data/dataset.h"

#include <glob.h>
#include <omp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "data/dataset_registry.h"
#include "data/prepare.h"
#include "data/token_shards.h"

namespace agpt {

namespace fs = std::filesystem;

std::size_t TokenSpans::total() const {
    std::size_t n = 0;
    for (std::size_t s : sizes) n += s;
    return n;
}

namespace {

TokenSpans spans_of_vector(const std::vector<int32_t>& v) {
    return {{v.size()}, [&v](std::size_t, std::size_t begin, std::size_t n, int32_t* out) {
                std::copy_n(v.data() + begin, n, out);
            }};
}

TokenSpans spans_of_shards(const std::vector<TokenShard>& shards) {
    TokenSpans s;
    for (const auto& sh : shards) s.sizes.push_back(sh.size());
    s.read = [&shards](std::size_t span, std::size_t begin, std::size_t n, int32_t* out) {
        shards[span].copy(begin, n, out);
    };
    return s;
}

// The shard files of a folder, a file or a glob pattern, sorted.
std::vector<std::string> shard_files(const std::string& path) {
    if (fs::exists(path)) return list_token_shards(path);
    glob_t g{};
    std::vector<std::string> found;
    if (::glob(path.c_str(), 0, nullptr, &g) == 0)
        for (std::size_t i = 0; i < g.gl_pathc; i++) found.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    std::sort(found.begin(), found.end());
    if (found.empty()) fail("{}: no such shard file or folder, and no file matches it", path);
    return found;
}

bool all_shard_files(const std::string& pattern) {
    glob_t g{};
    bool all = ::glob(pattern.c_str(), 0, nullptr, &g) == 0 && g.gl_pathc > 0;
    for (std::size_t i = 0; all && i < g.gl_pathc; i++)
        all = fs::path(g.gl_pathv[i]).extension() == ".bin";
    globfree(&g);
    return all;
}

// The manifest.json that `agpt data prepare` writes beside its shards, when there is one, must
// name the tokenizer's vocabulary size: ids of another vocabulary would train garbage (or index
// past the embedding).
void check_shard_manifest(const std::string& dataset, const std::string& first_shard,
                          const Tokenizer& tokenizer) {
    const fs::path manifest = fs::path(first_shard).parent_path() / "manifest.json";
    if (!fs::is_regular_file(manifest)) return;
    std::ifstream in(manifest);
    nlohmann::json m;
    try {
        m = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: not valid JSON ({})", manifest.string(), e.what());
    }
    auto string_of = [&](const char* key) {
        return m.is_object() && m.contains(key) && m[key].is_string() ? m[key].get<std::string>()
                                                                      : std::string("?");
    };
    if (string_of("format") != "agpt-token-shards" || !m["vocab_size"].is_number_integer())
        return;  // not written by `data prepare`: nothing to check
    const auto vocab = m["vocab_size"].get<long>();
    if (vocab != tokenizer.vocab_size())
        fail(
            "training.dataset '{}': the shards were prepared for a vocabulary of {} tokens "
            "(tokenizer '{}', {}) but the run's tokenizer has {}; set model.tokenizer to the "
            "tokenizer they were prepared with",
            dataset, vocab, string_of("tokenizer"), manifest.string(), tokenizer.vocab_size());
}

TrainingData open_shards(const std::string& dataset, const std::string& path,
                         const Tokenizer& tokenizer) {
    struct Shards {
        std::vector<TokenShard> train, val;
    };
    auto owned = std::make_shared<Shards>();
    const std::vector<std::string> files = shard_files(path);
    check_shard_manifest(dataset, files.front(), tokenizer);
    for (const auto& file : files) {
        auto& into = fs::path(file).filename().string().find("val") != std::string::npos
                         ? owned->val
                         : owned->train;
        into.emplace_back(file);
    }
    if (owned->train.empty())
        fail("training.dataset '{}': only validation shards (*val*.bin), nothing to train on",
             dataset);
    TrainingData d;
    d.source = path;
    d.train = spans_of_shards(owned->train);
    d.val = spans_of_shards(owned->val);
    d.storage = owned;
    return d;
}

struct Split {
    std::vector<int32_t> train, val;
};

TrainingData from_split(std::string source, std::shared_ptr<Split> owned) {
    TrainingData d;
    d.source = std::move(source);
    d.train = spans_of_vector(owned->train);
    d.val = spans_of_vector(owned->val);
    d.storage = std::move(owned);
    return d;
}

// The last val_fraction of `ids` held out.
void split_tail(std::vector<int32_t>& ids, double val_fraction, Split& into) {
    const auto n_val = static_cast<std::size_t>(static_cast<double>(ids.size()) * val_fraction);
    into.val.assign(ids.end() - static_cast<long>(n_val), ids.end());
    ids.resize(ids.size() - n_val);
    into.train = std::move(ids);
}

// One text file, tokenized whole (no EOS), the last val_fraction held out.
TrainingData open_text_file(const std::string& path, const Tokenizer& tokenizer,
                            double val_fraction) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open file", path);
    std::ostringstream text;
    text << in.rdbuf();
    auto owned = std::make_shared<Split>();
    std::vector<int32_t> ids = tokenizer.encode(text.str());
    split_tail(ids, val_fraction, *owned);
    return from_split(path, owned);
}

// Documents, as `agpt data prepare` reads and splits them, in memory.
TrainingData open_documents(const DatasetEntry& e, const Tokenizer& tokenizer,
                            double val_fraction) {
    PrepareOptions opt;
    opt.inputs = {e.path};
    opt.format = e.format;
    opt.text_field = e.text_field;
    opt.val_fraction = val_fraction;
    opt.workers = omp_get_max_threads();
    PreparedTokens tokens = prepare_in_memory(opt, tokenizer);
    auto owned = std::make_shared<Split>();
    if (tokens.val.empty() && val_fraction > 0) {
        split_tail(tokens.train, val_fraction, *owned);  // too few documents to hold one out
    } else {
        owned->train = std::move(tokens.train);
        owned->val = std::move(tokens.val);
    }
    return from_split(e.path, owned);
}

}  // namespace

TrainingData open_training_data(const std::string& dataset, const Tokenizer& tokenizer,
                                double val_fraction, const std::string& registry_file) {
    const DatasetRegistry registry = load_dataset_registry(registry_file);
    DatasetEntry e = resolve_dataset(dataset, registry, "training.dataset");
    check_dataset_tokenizer(e, tokenizer, "training.dataset");
    if (e.builtin()) return open_text_file(e.path, tokenizer, val_fraction);
    if (e.is_path()) {
        const std::string doc_format = document_format_of(e.path);
        if (fs::is_directory(e.path) || fs::path(e.path).extension() == ".bin" ||
            (!fs::exists(e.path) && all_shard_files(e.path)))
            e.format = "shards";
        else if (fs::is_regular_file(e.path) && (doc_format.empty() || doc_format == "txt"))
            return open_text_file(e.path, tokenizer, val_fraction);
        // else: .jsonl / .jsonl.zst / .parquet files, or a glob of documents (format by name)
    }
    if (e.format == "shards") return open_shards(dataset, e.path, tokenizer);
    return open_documents(e, tokenizer, val_fraction);
}

std::vector<std::pair<std::size_t, std::size_t>> sequential_windows(const TokenSpans& spans,
                                                                    int T) {
    std::vector<std::pair<std::size_t, std::size_t>> w;
    for (std::size_t s = 0; s < spans.sizes.size(); s++) {
        const std::size_t n = spans.sizes[s] > 1 ? (spans.sizes[s] - 1) / T : 0;
        for (std::size_t k = 0; k < n; k++) w.emplace_back(s, k * T);
    }
    return w;
}

}  // namespace agpt
