#include "data/tokenizer.h"

#include <filesystem>

#include "core/error.h"

namespace agpt {

Tokenizer Tokenizer::load(const std::string& spec) {
    Tokenizer t;
    if (spec == "byte") return t;
    if (!std::filesystem::is_regular_file(spec))
        fail("model.tokenizer '{}': neither 'byte' nor an existing tokenizer file", spec);
    t.bpe_ = BpeTokenizer::load(spec);
    return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
    return bpe_ ? bpe_->encode(text) : ByteTokenizer().encode(text);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
    return bpe_ ? bpe_->decode(ids, true) : ByteTokenizer().decode(ids);
}

int Tokenizer::vocab_size() const {
    return bpe_ ? bpe_->vocab_size() : ByteTokenizer::kVocabSize;
}

std::optional<int32_t> Tokenizer::bos_id() const {
    return bpe_ ? bpe_->bos_id() : std::optional<int32_t>(ByteTokenizer::kBos);
}

std::optional<int32_t> Tokenizer::eos_id() const {
    return bpe_ ? bpe_->eos_id() : std::optional<int32_t>(ByteTokenizer::kEos);
}

void Tokenizer::save_into(const std::string& run_dir) const {
    if (bpe_) bpe_->save_hf_json((std::filesystem::path(run_dir) / "tokenizer.json").string());
}

}  // namespace agpt
