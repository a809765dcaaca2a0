#pragma once
// Byte-level BPE tokenizer (GPT-2 / GPT-4 / Llama 3 style): train it, load it from a Hugging Face
// tokenizer.json or a tiktoken ranks file, save it as a tokenizer.json that `tokenizers` and
// `transformers` load, encode bytes to ids and decode ids back to the same bytes.
//
// Overview. Text is split into pieces by a pre-tokenizer regex (data/pretokenize.h). Each piece
// starts as one token per byte; BPE then repeatedly merges the adjacent pair of tokens with the
// lowest merge rank (the leftmost one on ties) until no pair has a merge. Special tokens
// ("<|bos|>", ...) have their own ids; plain encode() never produces them from text, so any byte
// string -- invalid UTF-8 included -- decodes back to exactly itself.
//
// Formats (docs/tokenizers.md has the details):
//   - tokenizer.json: model.type "BPE" with a ByteLevel pre-tokenizer (alone, or after one Split
//     with a GPT-2/GPT-4 regex), no normalizer; merges as "a b" strings or [a, b] pairs;
//     added_tokens become special tokens.
//   - tiktoken: one "<base64 token> <rank>" per line; rank = id; a pair merges when the
//     concatenation is a token, the lower its rank the earlier.
//
// Intended usage:
//   BpeTrainOptions opt;
//   opt.vocab_size = 8192;
//   BpeTokenizer tok = BpeTokenizer::train_files({"data/tinyshakespeare.txt"}, opt);
//   tok.save_hf_json("tok.json");
//   BpeTokenizer same = BpeTokenizer::load("tok.json");
//   std::vector<int32_t> ids = same.encode("Hello world");
//   std::string text = same.decode(ids);
//
// A BpeTokenizer is immutable after construction; encode/decode may be called from many threads
// at once (each thread keeps its own cache of encoded pieces).
#include <array>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/bpe_merge_table.h"
#include "data/pretokenize.h"

namespace agpt {

struct BpeSpecialToken {
    std::string text;
    int32_t id = -1;  // -1 in options: the next free id
};

struct BpeTrainProgress {
    enum class Phase { counting, merging };
    Phase phase = Phase::counting;
    uint64_t done = 0;   // counting: bytes read; merging: merges made
    uint64_t total = 0;  // counting: bytes in all inputs; merging: merges wanted
};

struct BpeTrainOptions {
    // Including the 256 byte tokens and the special tokens.
    int vocab_size = 8192;
    std::vector<std::string> specials = {"<|bos|>", "<|eos|>"};
    PretokenPattern pattern = PretokenPattern::gpt4;
    // Called now and then (and at the end of each phase); may be empty.
    std::function<void(const BpeTrainProgress&)> progress;
    // Input files are read and pre-tokenised this many bytes at a time.
    std::size_t chunk_bytes = std::size_t{16} << 20;
};

struct BpeTiktokenOptions {
    PretokenPattern pattern = PretokenPattern::gpt4;
    // Special tokens to add; id -1 takes the next id after the highest so far.
    std::vector<BpeSpecialToken> specials;
};

// Lets std::unordered_map<std::string, ...> be searched with a string_view.
struct BpeStringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class BpeTokenizer {
  public:
    using WordCounts = std::unordered_map<std::string, int64_t, BpeStringHash, std::equal_to<>>;

    // Detects the format: a file whose first non-blank byte is '{' is a tokenizer.json, anything
    // else a tiktoken ranks file (with `tiktoken` for what such a file does not say).
    static BpeTokenizer load(const std::string& path, const BpeTiktokenOptions& tiktoken = {});
    static BpeTokenizer load_hf_json(const std::string& path);
    static BpeTokenizer load_tiktoken(const std::string& path,
                                      const BpeTiktokenOptions& options = {});
    // `source` names the text in error messages.
    static BpeTokenizer from_hf_json(std::string_view json, const std::string& source);
    static BpeTokenizer from_tiktoken(std::string_view ranks, const std::string& source,
                                      const BpeTiktokenOptions& options = {});

    // Ids: 0-255 are the bytes, 256... the merges in order, then the special tokens.
    // Tie-break: among pairs of equal count the one with the smallest (left id, right id) wins.
    static BpeTokenizer train_files(const std::vector<std::string>& paths,
                                    const BpeTrainOptions& options);
    static BpeTokenizer train_texts(const std::vector<std::string_view>& texts,
                                    const BpeTrainOptions& options);

    // Writes through a temporary file and a rename, so a failure never leaves half a file.
    void save_hf_json(const std::string& path) const;
    std::string to_hf_json() const;

    // Special tokens in the text are encoded as ordinary bytes.
    std::vector<int32_t> encode(std::string_view text) const;
    // Appends the ids to `out` (saves a copy when encoding many documents into one buffer).
    void encode_append(std::string_view text, std::vector<int32_t>& out) const;
    // Occurrences of special-token texts become their ids (leftmost, longest first), as
    // Hugging Face's tokenizer does by default.
    std::vector<int32_t> encode_with_specials(std::string_view text) const;
    // Special tokens decode to their text unless skip_specials. Throws for an id outside the
    // vocabulary.
    std::string decode(std::span<const int32_t> ids, bool skip_specials = false) const;

    // Encodes a whole stream a chunk at a time (cut where pre-tokenisation is unaffected, so the
    // ids equal those of encoding it in one piece), handing each chunk's ids to `sink`. A special
    // token's text containing a newline can be missed at a chunk boundary.
    void encode_stream(std::istream& in, const std::function<void(std::span<const int32_t>)>& sink,
                       bool with_specials = false,
                       std::size_t chunk_bytes = std::size_t{1} << 20) const;
    // Reads whitespace-separated ids and writes their bytes; `source` names the input in errors.
    void decode_stream(std::istream& in, std::ostream& out, const std::string& source,
                       bool skip_specials = false) const;

    // One more than the largest id.
    int vocab_size() const { return static_cast<int>(id_to_bytes_.size()); }
    PretokenPattern pattern() const { return pattern_; }
    const std::vector<BpeSpecialToken>& specials() const { return specials_; }
    std::optional<int32_t> special_id(std::string_view text) const;
    // "<|bos|>", "<|begin_of_text|>", "<s>", "<bos>"; eos: "<|eos|>", "<|end_of_text|>",
    // "<|endoftext|>", "</s>", "<eos>".
    std::optional<int32_t> bos_id() const { return bos_id_; }
    std::optional<int32_t> eos_id() const { return eos_id_; }
    // The bytes of a non-special token, nullopt for an unused id or a special token that is not
    // also a BPE token.
    std::optional<std::string> token_bytes(int32_t id) const;
    std::optional<int32_t> token_id(std::string_view bytes) const;
    std::size_t merge_count() const { return merges_.size(); }

    // Empties this thread's cache of encoded pieces (for benchmarks of a cold start).
    static void clear_thread_cache();

  private:
    BpeTokenizer() = default;
    static BpeTokenizer from_word_counts(const WordCounts& counts, const BpeTrainOptions& options);
    // Builds the lookup structures from id_to_bytes_, merges_, specials_; checks consistency.
    void finish(const std::string& source);
    // at_start: the text begins the input (where add_prefix_space applies).
    void encode_text(std::string_view text, bool with_specials, bool at_start,
                     std::vector<int32_t>& out) const;
    void encode_ordinary(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
    void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
    void merge_piece(std::string_view piece, std::vector<int32_t>& out) const;

    PretokenPattern pattern_ = PretokenPattern::gpt4;
    bool add_prefix_space_ = false;  // Hugging Face ByteLevel option
    bool ignore_merges_ = false;     // a piece that is a token is taken whole (tiktoken, Llama 3)
    std::vector<std::string> id_to_bytes_;
    std::vector<uint8_t> is_bpe_token_;  // per id: has bytes (else unused or special only)
    std::vector<std::pair<int32_t, int32_t>> merges_;  // in rank order (ties: as stored)
    std::vector<int32_t> merge_ranks_;                 // rank of merges_[i]
    std::vector<BpeSpecialToken> specials_;

    std::vector<int32_t> special_of_id_;     // per id: index into specials_, or -1
    std::vector<int32_t> specials_longest_;  // indices into specials_, longest text first
    std::array<uint8_t, 256> special_first_byte_{};
    std::unordered_map<std::string, int32_t, BpeStringHash, std::equal_to<>> bytes_to_id_;
    std::array<int32_t, 256> byte_to_id_{};
    BpeMergeTable merge_table_;
    std::optional<int32_t> bos_id_, eos_id_;
    uint64_t instance_ = 0;  // keys the per-thread piece cache
};

}  // namespace agpt
