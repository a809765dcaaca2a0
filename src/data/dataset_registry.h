#pragma once
// Dataset names. `training.dataset` and `agpt data prepare --dataset` take a name or a path; a
// name is a built-in dataset (the bundled `tinyshakespeare`) or an entry of a registry file:
//
//   [datasets.my_corpus]
//   path = "corpora/fineweb/*.parquet"  # file, folder or glob; relative to this file's folder
//   format = "parquet"                  # txt | jsonl | jsonl.zst | parquet | shards
//   text_field = "text"                 # JSON key / parquet column (default "text")
//   tokenizer = "tok.json"              # optional: the tokenizer this data is for ("byte" or a
//   file)
//
// Which registry file (the first that applies): the path a caller passes (`--datasets FILE`,
// `training.dataset_registry`), $AGPT_DATASETS, ./datasets.toml if it exists; else none and
// only the built-in names exist. A name given that does not exist is an error; so is a file
// with a missing `path`, an unknown `format` or key, or a name that is a built-in one.
// docs/formats.md describes the file; docs/data.md how training and `data prepare` use it.
//
// Intended usage:
//   const DatasetRegistry reg = load_dataset_registry(registry_file);
//   const DatasetEntry d = resolve_dataset(value, reg, "training.dataset");
//   if (d.is_path()) ... a path given directly, format to be told from it ...
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agpt {

class Tokenizer;

struct DatasetEntry {
    std::string name;  // "" for a path given directly
    // The data: a file, folder or glob pattern, relative paths made relative to the current
    // directory (registry entries) or as given (paths). Built-ins: the file found, or "" when
    // it is missing (resolve_dataset then fails with the places searched).
    std::string path;
    std::string format;  // txt | jsonl | jsonl.zst | parquet | shards; "" for a path given
    std::string text_field = "text";
    std::string tokenizer;  // "" (any), "byte" or a tokenizer file path (resolved)
    std::string origin;     // "built-in", the registry file, or "path"
    bool builtin() const { return origin == "built-in"; }
    bool is_path() const { return name.empty(); }
};

struct DatasetRegistry {
    std::string file;  // the registry file read, "" when none
    std::string how;   // how it was found: "--datasets", "$AGPT_DATASETS", "./datasets.toml"
    std::vector<DatasetEntry> entries;  // the built-ins, then the file's entries by name
    const DatasetEntry* find(std::string_view name) const;
    // "tinyshakespeare (built-in); a, b (FILE)", or a hint where a registry file would come from.
    std::string known_names() const;
};

inline constexpr const char* kDatasetFormats = "txt, jsonl, jsonl.zst, parquet or shards";

// The registry file to read: `explicit_file` if not empty, else $AGPT_DATASETS if set and not
// empty, else ./datasets.toml if it exists, else "". A file named by the first two must exist
// (Error naming it and where the name came from). `how` receives where it came from.
std::string find_dataset_registry(const std::string& explicit_file, std::string* how = nullptr);

// The built-in names plus the entries of the file find_dataset_registry picks.
DatasetRegistry load_dataset_registry(const std::string& explicit_file = "");

// The built-in names plus the entries of `file` ("" = none). Throws Error naming the file (and
// line, or the entry and key) for unreadable or invalid TOML, an unknown top-level key, an
// entry that is not a table, a missing or empty `path`, an unknown `format` or key, a wrong
// type, or a built-in name.
DatasetRegistry read_dataset_registry(const std::string& file);

// A name (built-in or registry) or an existing path (file, folder, or a glob matching at least
// one file). Names win over paths. Throws Error "<what> '<value>': ..." naming the known names
// otherwise, and for a built-in whose file is missing.
DatasetEntry resolve_dataset(const std::string& value, const DatasetRegistry& registry,
                             std::string_view what);

// Whether two tokenizers are the same: the same tokenizer.json when saved (so a tiktoken file
// and the tokenizer.json converted from it are the same).
bool same_tokenizer(const Tokenizer& a, const Tokenizer& b);

// Refuses (Error naming the entry, its registry file and its tokenizer) when `entry` names a
// tokenizer that differs from `tok`; nothing when it names none.
void check_dataset_tokenizer(const DatasetEntry& entry, const Tokenizer& tok,
                             std::string_view what);

}  // namespace agpt
