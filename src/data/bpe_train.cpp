// BPE training: count the pre-tokenised pieces ("words") of the input, then repeatedly merge the
// most frequent adjacent pair of tokens, updating pair counts only in the words that hold the
// merged pair.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "core/error.h"
#include "data/bpe_tokenizer.h"

namespace agpt {

namespace {

using WordCounts = BpeTokenizer::WordCounts;

void count_words(std::string_view text, PretokenPattern pattern, WordCounts& counts) {
    for_each_pretoken(text, pattern, [&](std::string_view piece) {
        auto it = counts.find(piece);
        if (it == counts.end())
            counts.emplace(std::string(piece), 1);
        else
            it->second++;
    });
}

void check_options(const BpeTrainOptions& opt) {
    const std::size_t n_special = opt.specials.size();
    if (opt.vocab_size < 256 + static_cast<int>(n_special))
        fail(
            "tokenizer train: vocab_size {} is too small: it must hold the 256 byte tokens and {} "
            "special tokens",
            opt.vocab_size, n_special);
    for (std::size_t i = 0; i < n_special; i++) {
        if (opt.specials[i].empty()) fail("tokenizer train: a special token is empty");
        for (std::size_t k = 0; k < i; k++) {
            if (opt.specials[k] == opt.specials[i])
                fail("tokenizer train: special token '{}' is listed twice", opt.specials[i]);
        }
    }
}

struct PairStats {
    int64_t count = 0;
    std::vector<int32_t> words;  // may hold words that no longer have the pair
};

struct HeapEntry {
    int64_t count;
    uint64_t pair;
};

// Max-heap order: highest count first; on equal counts the smallest (left id, right id).
struct HeapBefore {
    bool operator()(const HeapEntry& x, const HeapEntry& y) const {
        return x.count != y.count ? x.count < y.count : x.pair > y.pair;
    }
};

int32_t left_of(uint64_t pair) {
    return static_cast<int32_t>(pair >> 32);
}
int32_t right_of(uint64_t pair) {
    return static_cast<int32_t>(pair & 0xFFFFFFFFu);
}

struct Trainer {
    const BpeTrainOptions& opt;
    // All words' symbols back to back; word w is symbols[start[w], start[w] + len[w]).
    std::vector<int32_t> symbols;
    std::vector<std::size_t> start;
    std::vector<int32_t> len;
    std::vector<int64_t> count;
    std::unordered_map<uint64_t, PairStats> pairs;
    std::vector<HeapEntry> heap;
    std::vector<uint64_t> touched;

    void add(uint64_t pair, int64_t c, int32_t word) {
        PairStats& s = pairs[pair];
        s.count += c;
        if (s.words.empty() || s.words.back() != word) s.words.push_back(word);
        touched.push_back(pair);
    }
    void remove(uint64_t pair, int64_t c) { pairs[pair].count -= c; }

    explicit Trainer(const BpeTrainOptions& o, const WordCounts& counts) : opt(o) {
        // Sorted words make the run independent of the hash map's iteration order.
        std::vector<const std::pair<const std::string, int64_t>*> sorted;
        sorted.reserve(counts.size());
        for (const auto& kv : counts) sorted.push_back(&kv);
        std::sort(sorted.begin(), sorted.end(),
                  [](const auto* x, const auto* y) { return x->first < y->first; });
        for (const auto* kv : sorted) {
            if (kv->first.size() < 2) continue;  // a single byte never merges
            start.push_back(symbols.size());
            len.push_back(static_cast<int32_t>(kv->first.size()));
            count.push_back(kv->second);
            for (const char c : kv->first) symbols.push_back(static_cast<unsigned char>(c));
        }
        for (int32_t w = 0; w < static_cast<int32_t>(start.size()); w++) {
            const int32_t* s = symbols.data() + start[w];
            for (int32_t i = 0; i + 1 < len[w]; i++)
                add(BpeMergeTable::key(s[i], s[i + 1]), count[w], w);
        }
        touched.clear();
        heap.reserve(pairs.size());
        for (const auto& [pair, stats] : pairs) heap.push_back({stats.count, pair});
        std::make_heap(heap.begin(), heap.end(), HeapBefore{});
    }

    // The most frequent pair, or nullopt when no pair is left.
    std::optional<uint64_t> pop_best() {
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), HeapBefore{});
            const HeapEntry e = heap.back();
            heap.pop_back();
            auto it = pairs.find(e.pair);
            if (it == pairs.end() || it->second.count <= 0) continue;
            if (it->second.count != e.count) {
                // Counts only fall between pushes (rises are pushed), so a stale entry is high:
                // requeue it at its true count.
                heap.push_back({it->second.count, e.pair});
                std::push_heap(heap.begin(), heap.end(), HeapBefore{});
                continue;
            }
            return e.pair;
        }
        return std::nullopt;
    }

    // Replaces every (a, b) by c in the words holding the pair and updates the pair counts.
    void merge(uint64_t pair, int32_t c, std::vector<int32_t>& stamp, int32_t merge_no) {
        const int32_t a = left_of(pair);
        const int32_t b = right_of(pair);
        const std::vector<int32_t> words = std::move(pairs[pair].words);
        for (const int32_t w : words) {
            if (stamp[w] == merge_no) continue;
            stamp[w] = merge_no;
            int32_t* s = symbols.data() + start[w];
            const int32_t n = len[w];
            const int64_t k = count[w];
            int32_t out = 0;
            for (int32_t i = 0; i < n;) {
                if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                    // The left neighbour is s[out - 1]: already rewritten, so it may be c itself.
                    if (out > 0) {
                        remove(BpeMergeTable::key(s[out - 1], a), k);
                        add(BpeMergeTable::key(s[out - 1], c), k, w);
                    }
                    remove(pair, k);
                    if (i + 2 < n) {
                        remove(BpeMergeTable::key(b, s[i + 2]), k);
                        add(BpeMergeTable::key(c, s[i + 2]), k, w);
                    }
                    s[out++] = c;
                    i += 2;
                } else {
                    s[out++] = s[i++];
                }
            }
            len[w] = out;
        }
        pairs.erase(pair);
        std::sort(touched.begin(), touched.end());
        touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
        for (const uint64_t p : touched) {
            auto it = pairs.find(p);
            if (it != pairs.end() && it->second.count > 0) {
                heap.push_back({it->second.count, p});
                std::push_heap(heap.begin(), heap.end(), HeapBefore{});
            }
        }
        touched.clear();
    }
};

void train_from_counts(const WordCounts& counts, const BpeTrainOptions& opt,
                       std::vector<std::string>& id_to_bytes,
                       std::vector<std::pair<int32_t, int32_t>>& merges) {
    const int target =
        opt.vocab_size - 256 - static_cast<int>(opt.specials.size());  // merges wanted
    Trainer t(opt, counts);
    id_to_bytes.resize(256);
    for (int b = 0; b < 256; b++) id_to_bytes[b] = std::string(1, static_cast<char>(b));
    std::vector<int32_t> stamp(t.start.size(), -1);
    BpeTrainProgress progress{BpeTrainProgress::Phase::merging, 0, static_cast<uint64_t>(target)};
    if (opt.progress) opt.progress(progress);
    for (int m = 0; m < target; m++) {
        const auto best = t.pop_best();
        if (!best) break;
        const int32_t c = 256 + m;
        id_to_bytes.push_back(id_to_bytes[left_of(*best)] + id_to_bytes[right_of(*best)]);
        merges.emplace_back(left_of(*best), right_of(*best));
        t.merge(*best, c, stamp, m);
        if (opt.progress && (m % 32 == 0)) {
            progress.done = static_cast<uint64_t>(m + 1);
            opt.progress(progress);
        }
    }
    progress.done = merges.size();
    if (opt.progress) opt.progress(progress);
}

}  // namespace

BpeTokenizer BpeTokenizer::from_word_counts(const WordCounts& counts,
                                            const BpeTrainOptions& options) {
    BpeTokenizer tok;
    train_from_counts(counts, options, tok.id_to_bytes_, tok.merges_);
    tok.pattern_ = options.pattern;
    tok.is_bpe_token_.assign(tok.id_to_bytes_.size(), 1);
    for (std::size_t i = 0; i < tok.merges_.size(); i++)
        tok.merge_ranks_.push_back(static_cast<int32_t>(i));
    auto next_id = static_cast<int32_t>(tok.id_to_bytes_.size());
    for (const std::string& s : options.specials) tok.specials_.push_back({s, next_id++});
    tok.finish("tokenizer train");
    return tok;
}

BpeTokenizer BpeTokenizer::train_texts(const std::vector<std::string_view>& texts,
                                       const BpeTrainOptions& options) {
    check_options(options);
    WordCounts counts;
    BpeTrainProgress progress{BpeTrainProgress::Phase::counting, 0, 0};
    for (const auto t : texts) progress.total += t.size();
    for (const auto t : texts) {
        count_words(t, options.pattern, counts);
        progress.done += t.size();
        if (options.progress) options.progress(progress);
    }
    return from_word_counts(counts, options);
}

BpeTokenizer BpeTokenizer::train_files(const std::vector<std::string>& paths,
                                       const BpeTrainOptions& options) {
    check_options(options);
    if (paths.empty()) fail("tokenizer train: no input files");
    if (options.chunk_bytes == 0) fail("tokenizer train: chunk_bytes must be positive");
    BpeTrainProgress progress{BpeTrainProgress::Phase::counting, 0, 0};
    for (const std::string& p : paths) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(p, ec);
        if (ec) fail("{}: cannot read: {}", p, ec.message());
        progress.total += size;
    }
    if (options.progress) options.progress(progress);
    WordCounts counts;
    std::string buffer;
    std::vector<char> block(options.chunk_bytes);
    for (const std::string& p : paths) {
        std::ifstream in(p, std::ios::binary);
        if (!in) fail("{}: cannot open file", p);
        buffer.clear();
        while (true) {
            // Cuts before here were looked for already; new ones need the new bytes.
            const std::size_t old_size = buffer.size();
            in.read(block.data(), static_cast<std::streamsize>(block.size()));
            const auto got = static_cast<std::size_t>(in.gcount());
            if (in.bad()) fail("{}: read failed", p);
            buffer.append(block.data(), got);
            progress.done += got;
            if (!in) break;  // end of file: the rest is processed below
            // Only text before a safe cut is pre-tokenised now; the rest waits for more bytes.
            const std::size_t cut = pretoken_safe_cut(buffer, old_size);
            if (cut == 0) continue;
            count_words(std::string_view(buffer).substr(0, cut), options.pattern, counts);
            buffer.erase(0, cut);
            if (options.progress) options.progress(progress);
        }
        count_words(buffer, options.pattern, counts);
        if (options.progress) options.progress(progress);
    }
    return from_word_counts(counts, options);
}

}  // namespace agpt
