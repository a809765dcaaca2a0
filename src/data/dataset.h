#pragma once
// What `training.dataset` names, opened for training: a built-in name ("tinyshakespeare"), a
// text file (tokenized with the run's tokenizer, the last validation.split held out), or llm.c
// token shards (a .bin file or a folder of them; files whose name contains "val" are the
// validation set, as in llm.c's fineweb_train_*.bin / fineweb_val_*.bin).
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

TrainingData open_training_data(const std::string& dataset, const Tokenizer& tokenizer,
                                double val_fraction);

// Windows of T+1 tokens at multiples of T in each span, in order: the validation batches.
std::vector<std::pair<std::size_t, std::size_t>> sequential_windows(const TokenSpans& spans, int T);

}  // namespace agpt
