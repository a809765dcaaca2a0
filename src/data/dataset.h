#pragma once
// What `training.dataset` names, opened for training (docs/data.md):
// - a name: the built-in "tinyshakespeare" (read as a text file, below), or an entry of the
//   dataset registry (data/dataset_registry.h): `shards` entries are read as below; txt, jsonl,
//   jsonl.zst and parquet entries are read and tokenized in memory exactly as `agpt data
//   prepare --val-fraction <val_fraction>` would (EOS after each document, every k-th document
//   held out, k = round(1 / val_fraction); with fewer than k documents, the last val_fraction
//   of the tokens instead);
// - a path: a folder or .bin file (or glob of .bin files) of llm.c token shards (files whose
//   name contains "val" are the validation set, as in llm.c's fineweb_train_*.bin /
//   fineweb_val_*.bin); .jsonl / .jsonl.zst / .parquet files or globs of documents, as registry
//   entries; any other file is one text, tokenized whole, the last val_fraction held out.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "data/text_dataset.h"
#include "data/tokenizer.h"

namespace agpt {

// Token streams in spans (one per shard, or one in-memory text) with a reader for each.
struct TokenSpans {
    std::vector<std::size_t> sizes;
    WindowLoader::Reader read;
    std::size_t total() const;
};

struct TrainingData {
    std::string source;  // the resolved path
    TokenSpans train, val;
    std::shared_ptr<void> storage;  // keeps the tokens or the mapped shards alive
};

// registry_file: the dataset registry to read names from ("" = $AGPT_DATASETS, else
// ./datasets.toml if present, else built-in names only). Throws Error (one line naming the
// dataset, file or key) for unknown names, a bad registry, unreadable data, shards whose
// manifest.json names another vocabulary size, or an entry whose `tokenizer` is not `tokenizer`.
TrainingData open_training_data(const std::string& dataset, const Tokenizer& tokenizer,
                                double val_fraction, const std::string& registry_file = "");

// Windows of T+1 tokens at multiples of T in each span, in order: the validation batches.
std::vector<std::pair<std::size_t, std::size_t>> sequential_windows(const TokenSpans& spans, int T);

}  // namespace agpt
