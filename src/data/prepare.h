#pragma once
// `agpt data prepare`: documents from text, JSON-lines (optionally zstd-compressed) and parquet
// files, tokenized with EOS after each document, written as llm.c token shards plus a manifest.
// The output depends only on the inputs and options, never on the number of workers: documents
// are tokenized in parallel in batches and appended in input order.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace agpt {

class Tokenizer;

struct PrepareProgress {
    uint64_t bytes_done = 0, bytes_total = 0;  // input text bytes
    uint64_t documents = 0, tokens = 0, text_bytes = 0;
    double seconds = 0;
};

struct PrepareOptions {
    std::vector<std::string> inputs;  // files, folders (searched recursively) or glob patterns
    std::string tokenizer = "byte";   // as model.tokenizer
    std::string out;                  // output folder (must not exist)
    double val_fraction = 0.01;  // the k-th, 2k-th, ... documents (k = round(1/f)) are held out
    int workers = 0;             // 0: all cores
    std::string text_field = "text";  // JSON key / parquet column
    // "": each file's format from its name (.txt, .jsonl, .jsonl.zst, .parquet); else one of
    // txt | jsonl | jsonl.zst | parquet for every input whatever its name (a folder then yields
    // only the files with that format's ending).
    std::string format;
    uint64_t shard_tokens = 100'000'000;
    bool skip_bad_files = false;  // report and skip unreadable inputs instead of stopping
    std::function<void(const PrepareProgress&)> progress;
};

struct PrepareSummary {
    uint64_t documents = 0, train_tokens = 0, val_tokens = 0, text_bytes = 0;
    int train_shards = 0, val_shards = 0;
    double seconds = 0;
    std::vector<std::string> skipped;  // "file: reason"
};

// The input files in processing order (sorted within each folder or glob). Throws Error when a
// pattern matches nothing. `format` as PrepareOptions::format.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs,
                                       const std::string& format = "");

// "txt", "jsonl", "jsonl.zst" or "parquet" for a file name with that ending, else "".
std::string document_format_of(const std::string& path);

PrepareSummary prepare_dataset(const PrepareOptions& opt);

// What prepare_dataset would write, in memory: the train and val tokens (each the concatenation
// of that split's shards). opt.tokenizer and opt.out are not used; `tok` tokenizes.
struct PreparedTokens {
    std::vector<int32_t> train, val;
    PrepareSummary summary;
};
PreparedTokens prepare_in_memory(const PrepareOptions& opt, const Tokenizer& tok);

}  // namespace agpt
