#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
// Byte-level tokenizer: ids 0..255 are the bytes themselves, then two special tokens.
// Any byte string round-trips exactly.
namespace agpt {

class ByteTokenizer {
  public:
    static constexpr int32_t kBos = 256;
    static constexpr int32_t kEos = 257;
    static constexpr int kVocabSize = 258;

    std::vector<int32_t> encode(std::string_view text) const;
    // Special tokens are dropped; ids outside the vocabulary throw Error.
    std::string decode(const std::vector<int32_t>& ids) const;
    int vocab_size() const { return kVocabSize; }
};

}  // namespace agpt
