#pragma once
// A reader for Thrift's compact protocol, the encoding of parquet's footer and page headers.
// It decodes from a bounded byte range and never trusts a length: every size, count and nesting
// depth is checked against the bytes that remain, so a hostile footer ends in an Error (without
// file context; the caller adds it) rather than a crash, a hang or an unbounded allocation.
//
// Usage: begin_struct(); while (next_field(id, type)) { switch (id) { case 1: x = read_i32();
// ... default: skip(type); } }  (next_field consumes the struct's stop byte and ends the struct).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace agpt::parquet {

// Wire types of the compact protocol (the low nibble of a field header).
enum class ThriftType : uint8_t {
    Stop = 0,
    BoolTrue = 1,
    BoolFalse = 2,
    Byte = 3,
    I16 = 4,
    I32 = 5,
    I64 = 6,
    Double = 7,
    Binary = 8,
    List = 9,
    Set = 10,
    Map = 11,
    Struct = 12,
};

class ThriftReader {
  public:
    // Deeper nesting than parquet's metadata ever uses (about 6) is treated as hostile.
    static constexpr int kMaxDepth = 32;

    ThriftReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    size_t position() const { return pos_; }
    size_t remaining() const { return size_ - pos_; }

    void begin_struct();
    // Reads the next field header; returns false (and leaves the struct) at its stop byte.
    bool next_field(int16_t& id, ThriftType& type);

    // A bool field's value lives in its header's type.
    static bool field_bool(ThriftType type) { return type == ThriftType::BoolTrue; }
    int8_t read_byte();
    int16_t read_i16();
    int32_t read_i32();
    int64_t read_i64();
    double read_double();
    // Views into the input; valid as long as the input is.
    std::string_view read_binary();
    std::string read_string() { return std::string(read_binary()); }

    // Returns the element count (bounded by the bytes left: every element takes at least one
    // byte, except in lists of bools, which still take one byte each).
    uint32_t begin_list(ThriftType& element_type);
    bool read_list_bool();

    // Skips a value of the given type, including nested structs, lists and maps.
    void skip(ThriftType type);

  private:
    uint64_t read_varint();
    int64_t read_zigzag(int64_t min, int64_t max, const char* what);
    uint8_t read_u8();
    void skip_at_depth(ThriftType type, int depth);

    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    int depth_ = 0;
    // Field ids are deltas from the previous field of the same struct; one slot per depth.
    int16_t last_field_[kMaxDepth + 1] = {};
};

// Element sizes the protocol guarantees, used to reject counts that cannot fit in the input.
size_t thrift_min_element_bytes(ThriftType type);

}  // namespace agpt::parquet
