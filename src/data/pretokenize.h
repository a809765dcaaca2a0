#pragma once
// Pre-tokenisation: the split of text into pieces ("words") that BPE merges never cross.
//
// The pieces are exactly those of the regexes GPT-2 and GPT-4 (tiktoken's cl100k_base, also
// Llama 3's) use, but found by a hand-written scanner: one pass, no backtracking, no regex
// engine. Letters (\p{L}) and numbers (\p{N}) come from ICU's Unicode category of each code
// point, \s is Unicode's White_Space property (what Rust's regex and Oniguruma use).
//
// Input is bytes, not necessarily UTF-8: a byte that does not start a valid UTF-8 sequence is a
// character of its own in the class "neither letter, number nor space" (like punctuation), so any
// byte string splits into pieces that concatenate back to it.
//
// Intended usage:
//   for_each_pretoken(text, PretokenPattern::gpt4, [&](std::string_view piece) { ... });
#include <cstddef>
#include <optional>
#include <string_view>

namespace agpt {

enum class PretokenPattern {
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    // (GPT-2; Hugging Face's ByteLevel pre-tokenizer with use_regex=true).
    gpt2,
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
    // \s*[\r\n]+|\s+(?!\S)|\s+  (cl100k_base as first published; Llama 3's tokenizer.json).
    gpt4,
    // tiktoken >= 0.7's cl100k_base: the same pieces except that whitespace running to the end of
    // the text is one piece even when it holds a newline (its extra alternative \s++$).
    gpt4_tiktoken,
};

// "gpt2", "gpt4", "gpt4-tiktoken".
std::string_view pretoken_pattern_name(PretokenPattern pattern);
// Throws agpt::Error for an unknown name.
PretokenPattern pretoken_pattern_from_name(std::string_view name);
// The regex this pattern implements, as written into a tokenizer.json.
std::string_view pretoken_regex(PretokenPattern pattern);
// Recognises the published spellings of the supported regexes (possessive or not); nullopt for
// any other regex.
std::optional<PretokenPattern> pretoken_pattern_from_regex(std::string_view regex);

// End (exclusive) of the piece that starts at `begin` < text.size().
std::size_t pretoken_end(std::string_view text, std::size_t begin, PretokenPattern pattern);

template <typename F>
void for_each_pretoken(std::string_view text, PretokenPattern pattern, F&& on_piece) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = pretoken_end(text, pos, pattern);
        on_piece(text.substr(pos, end - pos));
        pos = end;
    }
}

// A length c <= text.size() such that splitting the text at c yields the same pieces as the
// whole text does, for every pattern (pieces of text[0, c) then pieces of text[c, ...)); 0 when
// none was found. Lets a stream be pre-tokenised chunk by chunk. The cut lies after a '\n' that
// sits between two printable ASCII characters, where no pattern can join or look across. Only
// cuts >= min_cut are looked for (a stream reader passes where its new bytes begin, so a long
// line is not searched again for each chunk).
std::size_t pretoken_safe_cut(std::string_view text, std::size_t min_cut = 0);

}  // namespace agpt
