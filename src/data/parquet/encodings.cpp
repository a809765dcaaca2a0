#include "data/parquet/encodings.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/error.h"

namespace agpt::parquet {

int bit_width_for(uint32_t max_value) {
    return static_cast<int>(std::bit_width(max_value));
}

RleBitPackedDecoder::RleBitPackedDecoder(const uint8_t* data, size_t size, int bit_width)
    : p_(data), end_(data + size), bit_width_(bit_width) {
    if (bit_width < 0 || bit_width > 32) fail("bit width {} is not in 0..32", bit_width);
}

bool RleBitPackedDecoder::start_run() {
    while (p_ < end_) {
        // Run headers are ULEB128 up to 32 bits.
        uint64_t header = 0;
        int shift = 0;
        for (;;) {
            if (p_ >= end_) fail("RLE run header ends early");
            const uint8_t b = *p_++;
            header |= static_cast<uint64_t>(b & 0x7f) << shift;
            if ((b & 0x80) == 0) break;
            shift += 7;
            if (shift > 28) fail("RLE run header longer than 5 bytes");
        }
        if (header & 1) {
            const uint64_t values = (header >> 1) * 8;
            if (bit_width_ == 0) {
                // Zero-width values occupy no bytes: a run of zeros.
                repeat_left_ = values;
                repeat_value_ = 0;
            } else {
                literal_left_ = values;
            }
        } else {
            const size_t value_bytes = static_cast<size_t>((bit_width_ + 7) / 8);
            if (static_cast<size_t>(end_ - p_) < value_bytes) fail("RLE run value ends early");
            uint32_t v = 0;
            for (size_t i = 0; i < value_bytes; ++i) v |= static_cast<uint32_t>(p_[i]) << (8 * i);
            p_ += value_bytes;
            if (bit_width_ < 32 && (v >> bit_width_) != 0) {
                fail("RLE run value {} does not fit in {} bits", v, bit_width_);
            }
            repeat_left_ = header >> 1;
            repeat_value_ = v;
        }
        if (repeat_left_ > 0 || literal_left_ > 0) return true;
    }
    return false;
}

void RleBitPackedDecoder::decode_literals() {
    const size_t w = static_cast<size_t>(bit_width_);
    const uint64_t mask = w == 32 ? 0xffffffffull : (1ull << w) - 1;
    const size_t avail = static_cast<size_t>(end_ - p_);
    size_t groups = std::min<uint64_t>((literal_left_ + 7) / 8, kBatch / 8);
    // The last run may be cut short of its last groups (writers pad the value count up to a
    // multiple of 8, not always the bytes); decode what is there.
    size_t bytes = groups * w;
    if (bytes > avail) {
        bytes = avail;
        groups = (avail + w - 1) / w;
    }
    size_t n = 0;
    for (size_t g = 0; g < groups; ++g) {
        uint8_t tmp[40] = {};
        const size_t take = std::min(w, bytes - g * w);
        std::memcpy(tmp, p_ + g * w, take);
        const size_t values_here = take == w ? 8 : take * 8 / w;
        for (size_t i = 0; i < values_here; ++i) {
            const size_t bit = i * w;
            uint64_t word;
            std::memcpy(&word, tmp + (bit >> 3), 8);
            buffer_[n++] = static_cast<uint32_t>((word >> (bit & 7)) & mask);
        }
    }
    p_ += bytes;
    const uint64_t produced = std::min<uint64_t>(n, literal_left_);
    literal_left_ = bytes < groups * w || p_ == end_ ? 0 : literal_left_ - produced;
    buf_pos_ = 0;
    buf_len_ = static_cast<size_t>(produced);
}

bool RleBitPackedDecoder::next(Run& run, uint32_t max_count) {
    for (;;) {
        if (buf_pos_ < buf_len_) {
            const auto n = static_cast<uint32_t>(std::min<size_t>(buf_len_ - buf_pos_, max_count));
            run.count = n;
            run.repeated = false;
            run.values = buffer_ + buf_pos_;
            buf_pos_ += n;
            return true;
        }
        if (repeat_left_ > 0) {
            const auto n = static_cast<uint32_t>(std::min<uint64_t>(repeat_left_, max_count));
            run.count = n;
            run.repeated = true;
            run.value = repeat_value_;
            repeat_left_ -= n;
            return true;
        }
        if (literal_left_ > 0) {
            decode_literals();
            if (buf_len_ == 0) return false;
            continue;
        }
        if (!start_run()) return false;
    }
}

std::string_view PlainByteArrayDecoder::next() {
    if (end_ - p_ < 4) fail("PLAIN byte array length ends early");
    uint32_t n;
    std::memcpy(&n, p_, 4);
    p_ += 4;
    if (n > static_cast<size_t>(end_ - p_)) {
        fail("PLAIN byte array of {} bytes runs past the page ({} bytes left)", n, end_ - p_);
    }
    std::string_view v(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return v;
}

void decode_plain_dictionary(const uint8_t* data, size_t size, uint32_t count,
                             std::vector<std::string_view>& out) {
    if (count > size / 4) {
        fail("dictionary of {} values cannot fit in its {} bytes", count, size);
    }
    out.clear();
    out.reserve(count);
    PlainByteArrayDecoder dec(data, size);
    for (uint32_t i = 0; i < count; ++i) out.push_back(dec.next());
}

}  // namespace agpt::parquet
