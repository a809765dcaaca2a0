#include "data/byte_tokenizer.h"

#include "core/error.h"

namespace agpt {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
    std::vector<int32_t> ids(text.size());
    for (std::size_t i = 0; i < text.size(); i++) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) const {
    std::string out;
    out.reserve(ids.size());
    for (int32_t id : ids) {
        if (id < 0 || id >= kVocabSize) fail("tokenizer: id {} is outside [0, {})", id, kVocabSize);
        if (id < 256) out.push_back(static_cast<char>(id));
    }
    return out;
}

}  // namespace agpt
