#include "data/pretokenize.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace agpt {

namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt4Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt4TiktokenRegex =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";

// Other published spellings that split text identically (possessive quantifiers change nothing
// here because no alternative could backtrack into a different piece; for GPT-2, `\s++$` is what
// `\s+(?!\S)` already does at the end of the text).
constexpr std::string_view kGpt2TiktokenRegex =
    R"('(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s)";
constexpr std::string_view kGpt2NonCapturingRegex =
    R"('(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt4PossessiveRegex =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)";

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

struct CharInfo {
    uint32_t cp;  // kInvalid for a byte that does not start valid UTF-8
    uint32_t len;
    CharClass cls;
};

constexpr uint32_t kInvalid = 0xFFFFFFFFu;

constexpr std::array<CharClass, 128> make_ascii_classes() {
    std::array<CharClass, 128> t{};
    for (int c = 0; c < 128; c++) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            t[c] = kLetter;
        else if (c >= '0' && c <= '9')
            t[c] = kNumber;
        else if ((c >= 0x09 && c <= 0x0D) || c == ' ')
            t[c] = kSpace;
        else
            t[c] = kOther;
    }
    return t;
}
constexpr std::array<CharClass, 128> kAsciiClass = make_ascii_classes();

CharClass classify_with_icu(uint32_t cp) {
    switch (u_charType(static_cast<UChar32>(cp))) {
        case U_UPPERCASE_LETTER:
        case U_LOWERCASE_LETTER:
        case U_TITLECASE_LETTER:
        case U_MODIFIER_LETTER:
        case U_OTHER_LETTER:
            return kLetter;
        case U_DECIMAL_DIGIT_NUMBER:
        case U_LETTER_NUMBER:
        case U_OTHER_NUMBER:
            return kNumber;
        default:
            return u_isUWhiteSpace(static_cast<UChar32>(cp)) ? kSpace : kOther;
    }
}

// ICU's lookup is a function call and a trie walk; the Basic Multilingual Plane (all scripts most
// text is in) is tabulated once.
CharClass classify(uint32_t cp) {
    static const std::vector<CharClass> bmp = [] {
        std::vector<CharClass> t(0x10000);
        for (uint32_t c = 0; c < 0x10000; c++) t[c] = classify_with_icu(c);
        return t;
    }();
    return cp < 0x10000 ? bmp[cp] : classify_with_icu(cp);
}

bool is_cont(unsigned char b) {
    return (b & 0xC0) == 0x80;
}

class Text {
  public:
    explicit Text(std::string_view t)
        : s_(reinterpret_cast<const unsigned char*>(t.data())), n_(t.size()) {}
    std::size_t size() const { return n_; }
    unsigned char byte(std::size_t i) const { return s_[i]; }

    CharInfo at(std::size_t i) const {
        const unsigned char b0 = s_[i];
        if (b0 < 0x80) return {b0, 1, kAsciiClass[b0]};
        const std::size_t left = n_ - i;
        uint32_t cp = kInvalid;
        uint32_t len = 1;
        if (b0 >= 0xC2 && b0 <= 0xDF) {
            if (left >= 2 && is_cont(s_[i + 1])) {
                cp = ((b0 & 0x1Fu) << 6) | (s_[i + 1] & 0x3Fu);
                len = 2;
            }
        } else if (b0 >= 0xE0 && b0 <= 0xEF) {
            // E0 needs A0..BF next (no overlongs), ED needs 80..9F (no surrogates).
            const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;
            const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;
            if (left >= 3 && s_[i + 1] >= lo && s_[i + 1] <= hi && is_cont(s_[i + 2])) {
                cp = ((b0 & 0x0Fu) << 12) | ((s_[i + 1] & 0x3Fu) << 6) | (s_[i + 2] & 0x3Fu);
                len = 3;
            }
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            // F0 needs 90..BF next (no overlongs), F4 needs 80..8F (nothing above U+10FFFF).
            const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;
            const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;
            if (left >= 4 && s_[i + 1] >= lo && s_[i + 1] <= hi && is_cont(s_[i + 2]) &&
                is_cont(s_[i + 3])) {
                cp = ((b0 & 0x07u) << 18) | ((s_[i + 1] & 0x3Fu) << 12) |
                     ((s_[i + 2] & 0x3Fu) << 6) | (s_[i + 3] & 0x3Fu);
                len = 4;
            }
        }
        if (cp == kInvalid) return {kInvalid, 1, kOther};
        return {cp, len, classify(cp)};
    }

    // End of the run of characters of class `cls` that starts at i.
    std::size_t run_end(std::size_t i, CharClass cls) const {
        while (i < n_) {
            if (s_[i] < 0x80) {
                if (kAsciiClass[s_[i]] != cls) break;
                i++;
                continue;
            }
            const CharInfo c = at(i);
            if (c.cls != cls) break;
            i += c.len;
        }
        return i;
    }

    // The pieces a run of whitespace at i splits into, by the alternatives that follow the
    // letter/number/punctuation ones: `\s++$` (ws_to_end), `\s*[\r\n]+` (newline_rule: up to and
    // including the run's last newline), `\s+(?!\S)` (all but the run's last character, unless
    // the run ends the text) and `\s+`.
    std::size_t space_end(std::size_t i, bool newline_rule, bool ws_to_end) const {
        std::size_t j = i;
        std::size_t last_start = i;
        std::size_t after_newline = 0;
        while (j < n_) {
            const CharInfo c = at(j);
            if (c.cls != kSpace) break;
            if (c.cp == '\n' || c.cp == '\r') after_newline = j + 1;
            last_start = j;
            j += c.len;
        }
        if (ws_to_end && j == n_) return n_;
        if (newline_rule && after_newline != 0) return after_newline;
        if (j == n_) return n_;
        if (last_start > i) return last_start;
        return j;
    }

  private:
    const unsigned char* s_;
    std::size_t n_;
};

bool is_one_of(unsigned char b, std::string_view set) {
    return set.find(char(b)) != set.npos;
}

unsigned char ascii_lower(unsigned char b) {
    return (b >= 'A' && b <= 'Z') ? static_cast<unsigned char>(b + 32) : b;
}

std::size_t gpt2_end(const Text& t, std::size_t i) {
    const std::size_t n = t.size();
    const CharInfo c0 = t.at(i);
    if (c0.cp == '\'' && i + 1 < n) {
        const unsigned char b1 = t.byte(i + 1);
        if (is_one_of(b1, "stmd")) return i + 2;
        if (i + 2 < n) {
            const unsigned char b2 = t.byte(i + 2);
            if ((b1 == 'r' && b2 == 'e') || (b1 == 'v' && b2 == 'e') || (b1 == 'l' && b2 == 'l'))
                return i + 3;
        }
    }
    if (c0.cp == ' ' && i + 1 < n) {
        const CharInfo c1 = t.at(i + 1);
        if (c1.cls != kSpace) return t.run_end(i + 1, c1.cls);
    }
    if (c0.cls != kSpace) return t.run_end(i, c0.cls);
    return t.space_end(i, false, false);
}

std::size_t gpt4_end(const Text& t, std::size_t i, bool ws_to_end) {
    const std::size_t n = t.size();
    const CharInfo c0 = t.at(i);
    if (c0.cp == '\'' && i + 1 < n) {
        // Case-insensitive, with Unicode case folding: U+017F (long s) folds to 's'.
        const CharInfo c1 = t.at(i + 1);
        if (c1.cp == 0x17F || (c1.cp < 0x80 && is_one_of(ascii_lower(c1.cp), "stmd")))
            return i + 1 + c1.len;
        if (i + 2 < n) {
            const unsigned char b1 = ascii_lower(t.byte(i + 1));
            const unsigned char b2 = ascii_lower(t.byte(i + 2));
            if ((b1 == 'r' && b2 == 'e') || (b1 == 'v' && b2 == 'e') || (b1 == 'l' && b2 == 'l'))
                return i + 3;
        }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c0.cls == kLetter) return t.run_end(i, kLetter);
    if (c0.cls != kNumber && c0.cp != '\r' && c0.cp != '\n' && i + c0.len < n) {
        const CharInfo c1 = t.at(i + c0.len);
        if (c1.cls == kLetter) return t.run_end(i + c0.len, kLetter);
    }
    // \p{N}{1,3}
    if (c0.cls == kNumber) {
        std::size_t j = i + c0.len;
        for (int k = 1; k < 3 && j < n; k++) {
            const CharInfo c = t.at(j);
            if (c.cls != kNumber) break;
            j += c.len;
        }
        return j;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    std::size_t p = i;
    CharClass cls = c0.cls;
    if (c0.cp == ' ' && i + 1 < n) {
        const CharInfo c1 = t.at(i + 1);
        if (c1.cls == kOther) {
            p = i + 1;
            cls = kOther;
        }
    }
    if (cls == kOther) {
        p = t.run_end(p, kOther);
        while (p < n && (t.byte(p) == '\r' || t.byte(p) == '\n')) p++;
        return p;
    }
    return t.space_end(i, true, ws_to_end);
}

bool is_printable_ascii(unsigned char b) {
    return b >= 0x21 && b <= 0x7E;
}

}  // namespace

std::string_view pretoken_pattern_name(PretokenPattern pattern) {
    switch (pattern) {
        case PretokenPattern::gpt2:
            return "gpt2";
        case PretokenPattern::gpt4:
            return "gpt4";
        case PretokenPattern::gpt4_tiktoken:
            return "gpt4-tiktoken";
    }
    return "?";
}

PretokenPattern pretoken_pattern_from_name(std::string_view name) {
    if (name == "gpt2") return PretokenPattern::gpt2;
    if (name == "gpt4") return PretokenPattern::gpt4;
    if (name == "gpt4-tiktoken") return PretokenPattern::gpt4_tiktoken;
    fail("pre-tokenizer pattern '{}' is unknown (known: gpt2, gpt4, gpt4-tiktoken)", name);
}

std::string_view pretoken_regex(PretokenPattern pattern) {
    switch (pattern) {
        case PretokenPattern::gpt2:
            return kGpt2Regex;
        case PretokenPattern::gpt4:
            return kGpt4Regex;
        case PretokenPattern::gpt4_tiktoken:
            return kGpt4TiktokenRegex;
    }
    return {};
}

std::optional<PretokenPattern> pretoken_pattern_from_regex(std::string_view regex) {
    if (regex == kGpt2Regex || regex == kGpt2TiktokenRegex || regex == kGpt2NonCapturingRegex)
        return PretokenPattern::gpt2;
    if (regex == kGpt4Regex || regex == kGpt4PossessiveRegex) return PretokenPattern::gpt4;
    if (regex == kGpt4TiktokenRegex) return PretokenPattern::gpt4_tiktoken;
    return std::nullopt;
}

std::size_t pretoken_end(std::string_view text, std::size_t begin, PretokenPattern pattern) {
    const Text t(text);
    switch (pattern) {
        case PretokenPattern::gpt2:
            return gpt2_end(t, begin);
        case PretokenPattern::gpt4:
            return gpt4_end(t, begin, false);
        case PretokenPattern::gpt4_tiktoken:
            return gpt4_end(t, begin, true);
    }
    return text.size();
}

std::size_t pretoken_safe_cut(std::string_view text, std::size_t min_cut) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t lowest = std::max<std::size_t>(min_cut, 2);
    for (std::size_t c = text.size() > 0 ? text.size() - 1 : 0; c >= lowest; c--) {
        if (s[c - 1] == '\n' && is_printable_ascii(s[c - 2]) && is_printable_ascii(s[c])) return c;
    }
    return 0;
}

}  // namespace agpt
