#pragma once
// GPT-2's byte-to-unicode mapping, in which byte-level BPE vocabularies (tokenizer.json) spell
// their tokens: printable bytes stand for themselves ('!'..'~', '¡'..'¬', '®'..'ÿ'), the other 68
// map to U+0100.. in byte order, so a space is 'Ġ' and a newline 'Ċ'. No token ever holds a
// literal space, which is why "a b" can list a merge.
#include <optional>
#include <string>
#include <string_view>

namespace agpt {

// The UTF-8 spelling of the bytes.
std::string bpe_bytes_to_unicode(std::string_view bytes);
// Back to bytes; nullopt when the text is not made of mapped characters only.
std::optional<std::string> bpe_unicode_to_bytes(std::string_view text);

}  // namespace agpt
