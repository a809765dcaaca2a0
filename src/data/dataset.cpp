#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
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

}  // namespace

TrainingData open_training_data(const std::string& dataset, const Tokenizer& tokenizer,
                                double val_fraction) {
    const bool shards = fs::is_directory(dataset) || fs::path(dataset).extension() == ".bin";
    TrainingData d;
    if (shards) {
        struct Shards {
            std::vector<TokenShard> train, val;
        };
        auto owned = std::make_shared<Shards>();
        for (const auto& path : list_token_shards(dataset)) {
            auto& into = fs::path(path).filename().string().find("val") != std::string::npos
                             ? owned->val
                             : owned->train;
            into.emplace_back(path);
        }
        if (owned->train.empty())
            fail("training.dataset '{}': only validation shards (*val*.bin), nothing to train on",
                 dataset);
        d.source = dataset;
        d.train = spans_of_shards(owned->train);
        d.val = spans_of_shards(owned->val);
        d.storage = owned;
        return d;
    }
    d.source = resolve_dataset_path(dataset);
    std::ifstream in(d.source, std::ios::binary);
    if (!in) fail("{}: cannot open file", d.source);
    std::ostringstream text;
    text << in.rdbuf();
    struct Split {
        std::vector<int32_t> train, val;
    };
    auto owned = std::make_shared<Split>();
    std::vector<int32_t> ids = tokenizer.encode(text.str());
    const auto n_val = static_cast<std::size_t>(static_cast<double>(ids.size()) * val_fraction);
    owned->val.assign(ids.end() - static_cast<long>(n_val), ids.end());
    ids.resize(ids.size() - n_val);
    owned->train = std::move(ids);
    d.train = spans_of_vector(owned->train);
    d.val = spans_of_vector(owned->val);
    d.storage = owned;
    return d;
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
