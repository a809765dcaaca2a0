#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
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

// Serves (B, T) input/target batches from windows of T+1 tokens. The tokens come in spans (one
// in-memory corpus, or one per shard file); windows start at multiples of T inside a span and
// never straddle two. Each epoch is a permutation of all windows seeded by (seed, epoch); with
// `world` data-parallel ranks, rank r takes the permutation's positions r, r + world, ..., so
// the ranks' windows are disjoint and together cover every window exactly once per epoch.
// The state (epoch, position) is saved in checkpoints; restore() continues exactly.
class WindowLoader {
  public:
    // Copies n tokens starting at `begin` of span `span` into out.
    using Reader =
        std::function<void(std::size_t span, std::size_t begin, std::size_t n, int32_t* out)>;
    WindowLoader(std::vector<std::size_t> span_tokens, Reader read, int T, uint64_t seed,
                 int rank = 0, int world = 1);
    // One in-memory span; `tokens` must outlive the loader.
    WindowLoader(const std::vector<int32_t>& tokens, int T, uint64_t seed, int rank = 0,
                 int world = 1);
    // Fills inputs and targets (B·T each) and advances; crosses epochs as needed.
    void next_batch(int B, int32_t* inputs, int32_t* targets);
    long num_windows() const { return static_cast<long>(order_.size()); }  // all ranks
    long rank_windows() const;  // this rank's share of an epoch
    long epoch() const { return epoch_; }
    long position() const { return pos_; }
    // Continues from a saved (epoch, position), as if next_batch had been called up to there.
    void restore(long epoch, long position);

  private:
    void shuffle_for_epoch();
    Reader read_;
    int T_;
    uint64_t seed_;
    int rank_, world_;
    std::vector<std::pair<std::size_t, std::size_t>> windows_;  // (span, start)
    std::vector<long> order_;
    std::vector<int32_t> buffer_;
    long epoch_ = 0, pos_ = 0;
};

}  // namespace agpt
