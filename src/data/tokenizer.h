#pragma once
// The tokenizer a run trains with: the built-in byte tokenizer ("byte") or a BPE vocabulary
// from a file (Hugging Face tokenizer.json or tiktoken ranks), chosen by model.tokenizer.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/bpe_tokenizer.h"
#include "data/byte_tokenizer.h"

namespace agpt {

// The byte tokenizer as a byte-level BPE without merges (ids: bytes, <|bos|>, <|eos|>).
BpeTokenizer byte_tokenizer_as_bpe();

class Tokenizer {
  public:
    // "byte", or a path to a tokenizer.json / tiktoken file (Error naming the file otherwise).
    static Tokenizer load(const std::string& spec);

    std::vector<int32_t> encode(std::string_view text) const;
    // Special tokens are dropped.
    std::string decode(const std::vector<int32_t>& ids) const;
    int vocab_size() const;
    std::optional<int32_t> bos_id() const;
    std::optional<int32_t> eos_id() const;
    // Writes tokenizer.json into a run folder; the byte tokenizer as a merge-free byte-level BPE
    // with the same ids, so `--run DIR` tools and Hugging Face exports work the same for both.
    void save_into(const std::string& run_dir) const;

  private:
    std::optional<BpeTokenizer> bpe_;
};

}  // namespace agpt
