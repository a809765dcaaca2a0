#include "data/text_dataset.h"

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

WindowLoader::WindowLoader(const std::vector<int32_t>& tokens, int T, uint64_t seed)
    : tokens_(tokens), T_(T), seed_(seed) {
    const long n_windows = tokens.size() > 1 ? static_cast<long>((tokens.size() - 1) / T) : 0;
    if (n_windows == 0)
        fail("dataset: {} tokens are too few for one window of seq_len {} + 1", tokens.size(), T);
    order_.resize(n_windows);
    shuffle_for_epoch();
}

void WindowLoader::shuffle_for_epoch() {
    std::iota(order_.begin(), order_.end(), 0L);
    // Fisher-Yates with our own generator: the same order on every platform.
    Rng rng(seed_ * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch_) + 1);
    for (long i = static_cast<long>(order_.size()) - 1; i > 0; i--)
        std::swap(order_[i], order_[static_cast<long>(rng.below(static_cast<uint64_t>(i) + 1))]);
}

void WindowLoader::restore(long epoch, long position) {
    if (epoch < 0 || position < 0 || position > static_cast<long>(order_.size()))
        fail("data loader state (epoch {}, position {}) does not fit {} windows", epoch, position,
             order_.size());
    epoch_ = epoch;
    pos_ = position;
    shuffle_for_epoch();
}

void WindowLoader::next_batch(int B, int32_t* inputs, int32_t* targets) {
    for (int b = 0; b < B; b++) {
        if (pos_ == static_cast<long>(order_.size())) {
            epoch_++;
            pos_ = 0;
            shuffle_for_epoch();
        }
        const int32_t* w = tokens_.data() + order_[pos_++] * T_;
        for (int t = 0; t < T_; t++) {
            inputs[b * T_ + t] = w[t];
            targets[b * T_ + t] = w[t + 1];
        }
    }
}

}  // namespace agpt
