#pragma once
#include <cstdint>
#include <string>
#include <vector>
// A tokenized text corpus split into a training part and a held-out validation tail, served as
// fixed-length windows in a seeded per-epoch order.
namespace agpt {

// Resolves a dataset name or path to a file. Built-in names: "tinyshakespeare" (the bundled
// corpus, looked up in $AGPT_DATA_DIR, ./data and the source tree's data/). Throws Error naming
// the dataset and the places searched.
std::string resolve_dataset_path(const std::string& name_or_path);

struct TokenSplit {
    std::vector<int32_t> train;
    std::vector<int32_t> val;
};

// Reads the file, byte-tokenizes it and holds out the last val_fraction of the tokens.
TokenSplit load_byte_corpus(const std::string& path, double val_fraction);

// Serves (B, T) input/target batches from windows of T+1 tokens starting at multiples of T.
// Each epoch visits every window once in an order seeded by (seed, epoch).
class WindowLoader {
  public:
    WindowLoader(const std::vector<int32_t>& tokens, int T, uint64_t seed);
    // Fills inputs and targets (B·T each) and advances; crosses epochs as needed.
    void next_batch(int B, int32_t* inputs, int32_t* targets);
    long num_windows() const { return static_cast<long>(order_.size()); }
    long epoch() const { return epoch_; }
    long position() const { return pos_; }
    // Continues from a saved (epoch, position), as if next_batch had been called up to there.
    void restore(long epoch, long position);

  private:
    void shuffle_for_epoch();
    const std::vector<int32_t>& tokens_;
    int T_;
    uint64_t seed_;
    std::vector<long> order_;
    long epoch_ = 0, pos_ = 0;
};

}  // namespace agpt
