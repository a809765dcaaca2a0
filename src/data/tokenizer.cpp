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

BpeTokenizer byte_tokenizer_as_bpe() {
    // A byte-level BPE without merges whose ids are the bytes, then <|bos|>, <|eos|>: exactly the
    // byte tokenizer, in a form Hugging Face loads.
    BpeTrainOptions opt;
    opt.vocab_size = ByteTokenizer::kVocabSize;
    opt.specials = {"<|bos|>", "<|eos|>"};
    BpeTokenizer t = BpeTokenizer::train_texts({}, opt);
    if (t.vocab_size() != ByteTokenizer::kVocabSize || t.bos_id() != ByteTokenizer::kBos ||
        t.eos_id() != ByteTokenizer::kEos)
        fail("byte tokenizer: its BPE form does not reproduce the byte ids");
    return t;
}

void Tokenizer::save_into(const std::string& run_dir) const {
    const std::string path = (std::filesystem::path(run_dir) / "tokenizer.json").string();
    if (bpe_)
        bpe_->save_hf_json(path);
    else
        byte_tokenizer_as_bpe().save_hf_json(path);
}

}  // namespace agpt
