#pragma once
// Value encodings of parquet pages that string columns use: the RLE / bit-packed hybrid (for
// definition levels and dictionary indices) and PLAIN byte arrays (for values and dictionaries).
// Decoders read from a bounded byte range they do not own and throw Error (without file
// context) when the data ends early or claims what it cannot hold.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace agpt::parquet {

// Bits needed to store values 0..max_value (0 for max_value 0).
int bit_width_for(uint32_t max_value);

// The RLE / bit-packed hybrid of the parquet spec, without the 4-byte length prefix that data
// page v1 levels carry (the caller strips it). Runs come out as they are stored, so a run of a
// million nulls costs one call, not a million.
class RleBitPackedDecoder {
  public:
    struct Run {
        uint32_t count = 0;
        bool repeated = false;
        uint32_t value = 0;                // repeated runs: the value, `count` times
        const uint32_t* values = nullptr;  // literal runs: `count` values
    };

    RleBitPackedDecoder() = default;
    // bit_width 0..32.
    RleBitPackedDecoder(const uint8_t* data, size_t size, int bit_width);

    // The next run, cut to at most max_count (> 0) values; false once the data is exhausted.
    bool next(Run& run, uint32_t max_count);

  private:
    static constexpr size_t kBatch = 256;  // literal values decoded at a time (multiple of 8)
    bool start_run();
    void decode_literals();

    const uint8_t* p_ = nullptr;
    const uint8_t* end_ = nullptr;
    int bit_width_ = 0;
    uint64_t repeat_left_ = 0;
    uint32_t repeat_value_ = 0;
    uint64_t literal_left_ = 0;  // values of the current bit-packed run not yet decoded
    uint32_t buffer_[kBatch];
    size_t buf_pos_ = 0, buf_len_ = 0;
};

// PLAIN BYTE_ARRAY: each value is a 4-byte little-endian length and that many bytes.
class PlainByteArrayDecoder {
  public:
    PlainByteArrayDecoder() = default;
    PlainByteArrayDecoder(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
    std::string_view next();

  private:
    const uint8_t* p_ = nullptr;
    const uint8_t* end_ = nullptr;
};

// A dictionary page's `count` PLAIN byte arrays, as views into `data`.
void decode_plain_dictionary(const uint8_t* data, size_t size, uint32_t count,
                             std::vector<std::string_view>& out);

}  // namespace agpt::parquet
