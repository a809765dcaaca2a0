#include "data/bpe_byte_unicode.h"

#include <array>
#include <cstdint>

namespace agpt {

namespace {

struct ByteUnicodeTables {
    std::array<uint16_t, 256> to_cp{};
    std::array<int16_t, 324> to_byte{};  // code points 0..323 (256 + 68 - 1)

    ByteUnicodeTables() {
        to_byte.fill(-1);
        uint16_t next = 256;
        for (int b = 0; b < 256; b++) {
            const bool printable =
                (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            to_cp[b] = printable ? static_cast<uint16_t>(b) : next++;
            to_byte[to_cp[b]] = static_cast<int16_t>(b);
        }
    }
};

const ByteUnicodeTables& tables() {
    static const ByteUnicodeTables t;
    return t;
}

}  // namespace

std::string bpe_bytes_to_unicode(std::string_view bytes) {
    const ByteUnicodeTables& t = tables();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const char c : bytes) {
        const uint16_t cp = t.to_cp[static_cast<unsigned char>(c)];
        if (cp < 0x80) {
            out.push_back(static_cast<char>(cp));
        } else {
            out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
    }
    return out;
}

std::optional<std::string> bpe_unicode_to_bytes(std::string_view text) {
    const ByteUnicodeTables& t = tables();
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        const auto b0 = static_cast<unsigned char>(text[i]);
        uint32_t cp;
        if (b0 < 0x80) {
            cp = b0;
            i += 1;
        } else if ((b0 & 0xE0) == 0xC0 && i + 1 < text.size() &&
                   (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80) {
            cp = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
            i += 2;
        } else {
            return std::nullopt;  // three- and four-byte characters are never mapped
        }
        if (cp >= t.to_byte.size() || t.to_byte[cp] < 0) return std::nullopt;
        out.push_back(static_cast<char>(t.to_byte[cp]));
    }
    return out;
}

}  // namespace agpt
