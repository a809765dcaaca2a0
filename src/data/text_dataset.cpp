#include "data/text_dataset.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/rng.h"
#include "data/byte_tokenizer.h"

namespace agpt {

namespace fs = std::filesystem;

std::string resolve_dataset_path(const std::string& name_or_path) {
    if (name_or_path == "tinyshakespeare") {
        std::vector<fs::path> dirs;
        if (const char* env = std::getenv("AGPT_DATA_DIR")) dirs.emplace_back(env);
        dirs.emplace_back("data");
        dirs.emplace_back(fs::path(AGPT_SOURCE_DIR) / "data");
        std::string searched;
        for (const auto& d : dirs) {
            const fs::path p = d / "tinyshakespeare.txt";
            if (fs::is_regular_file(p)) return p.string();
            searched += (searched.empty() ? "" : ", ") + p.string();
        }
        fail(
            "training.dataset 'tinyshakespeare': bundled corpus not found (searched {}); set "
            "AGPT_DATA_DIR to the folder holding tinyshakespeare.txt",
            searched);
    }
    if (!fs::is_regular_file(name_or_path))
        fail(
            "training.dataset '{}': not a known dataset name (known: tinyshakespeare) and no "
            "such file",
            name_or_path);
    return name_or_path;
}

TokenSplit load_byte_corpus(const std::string& path, double val_fraction) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open file", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::vector<int32_t> ids = ByteTokenizer().encode(ss.str());
    const auto n_val = static_cast<std::size_t>(static_cast<double>(ids.size()) * val_fraction);
    TokenSplit split;
    split.train.assign(ids.begin(), ids.end() - static_cast<long>(n_val));
    split.val.assign(ids.end() - static_cast<long>(n_val), ids.end());
    return split;
}

WindowLoader::WindowLoader(std::vector<std::size_t> span_tokens, Reader read, int T, uint64_t seed,
                           int rank, int world)
    : read_(std::move(read)), T_(T), seed_(seed), rank_(rank), world_(world) {
    if (T <= 0) fail("data loader: seq_len {} must be positive", T);
    if (world < 1 || rank < 0 || rank >= world)
        fail("data loader: rank {} is outside a world of {}", rank, world);
    std::size_t total = 0;
    for (std::size_t s = 0; s < span_tokens.size(); s++) {
        total += span_tokens[s];
        const std::size_t n = span_tokens[s] > 1 ? (span_tokens[s] - 1) / T : 0;
        for (std::size_t k = 0; k < n; k++) windows_.emplace_back(s, k * T);
    }
    if (windows_.size() < static_cast<std::size_t>(world))
        fail("dataset: {} tokens make {} windows of seq_len {} + 1, fewer than the {} rank(s)",
             total, windows_.size(), T, world);
    order_.resize(windows_.size());
    buffer_.resize(static_cast<std::size_t>(T) + 1);
    shuffle_for_epoch();
}

WindowLoader::WindowLoader(const std::vector<int32_t>& tokens, int T, uint64_t seed, int rank,
                           int world)
    : WindowLoader(
          {tokens.size()},
          [&tokens](std::size_t, std::size_t begin, std::size_t n, int32_t* out) {
              std::copy_n(tokens.data() + begin, n, out);
          },
          T, seed, rank, world) {}

long WindowLoader::rank_windows() const {
    const long n = static_cast<long>(order_.size());
    return (n - rank_ + world_ - 1) / world_;
}

void WindowLoader::shuffle_for_epoch() {
    std::iota(order_.begin(), order_.end(), 0L);
    // Fisher-Yates with our own generator: the same order on every platform and every rank.
    Rng rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch_) + 1);
    for (long i = static_cast<long>(order_.size()) - 1; i > 0; i--)
        std::swap(order_[i], order_[static_cast<long>(rng.below(static_cast<uint64_t>(i) + 1))]);
}

void WindowLoader::restore(long epoch, long position) {
    if (epoch < 0 || position < 0 || position > rank_windows())
        fail("data loader state (epoch {}, position {}) does not fit {} windows", epoch, position,
             rank_windows());
    epoch_ = epoch;
    pos_ = position;
    shuffle_for_epoch();
}

void WindowLoader::next_batch(int B, int32_t* inputs, int32_t* targets) {
    for (int b = 0; b < B; b++) {
        if (pos_ == rank_windows()) {
            epoch_++;
            pos_ = 0;
            shuffle_for_epoch();
        }
        const auto [span, start] = windows_[order_[pos_++ * world_ + rank_]];
        read_(span, start, static_cast<std::size_t>(T_) + 1, buffer_.data());
        std::copy_n(buffer_.data(), T_, inputs + static_cast<long>(b) * T_);
        std::copy_n(buffer_.data() + 1, T_, targets + static_cast<long>(b) * T_);
    }
}

}  // namespace agpt
