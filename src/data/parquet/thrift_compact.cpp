#include "data/parquet/thrift_compact.h"

#include <cstring>

#include "core/error.h"

namespace agpt::parquet {

namespace {

bool is_known_type(uint8_t t) {
    return t <= static_cast<uint8_t>(ThriftType::Struct);
}

}  // namespace

size_t thrift_min_element_bytes(ThriftType type) {
    return type == ThriftType::Double ? 8 : 1;
}

uint8_t ThriftReader::read_u8() {
    if (pos_ >= size_) fail("thrift data ends early (at byte {})", pos_);
    return data_[pos_++];
}

uint64_t ThriftReader::read_varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        const uint8_t b = read_u8();
        value |= static_cast<uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) return value;
    }
    fail("thrift varint longer than 10 bytes at byte {}", pos_);
}

int64_t ThriftReader::read_zigzag(int64_t min, int64_t max, const char* what) {
    const uint64_t raw = read_varint();
    const int64_t value = static_cast<int64_t>(raw >> 1) ^ -static_cast<int64_t>(raw & 1);
    if (value < min || value > max)
        fail("thrift {} out of range ({}) at byte {}", what, value, pos_);
    return value;
}

int8_t ThriftReader::read_byte() {
    return static_cast<int8_t>(read_u8());
}

int16_t ThriftReader::read_i16() {
    return static_cast<int16_t>(read_zigzag(INT16_MIN, INT16_MAX, "i16"));
}

int32_t ThriftReader::read_i32() {
    return static_cast<int32_t>(read_zigzag(INT32_MIN, INT32_MAX, "i32"));
}

int64_t ThriftReader::read_i64() {
    return read_zigzag(INT64_MIN, INT64_MAX, "i64");
}

double ThriftReader::read_double() {
    if (remaining() < 8) fail("thrift data ends inside a double at byte {}", pos_);
    double d;
    std::memcpy(&d, data_ + pos_, 8);
    pos_ += 8;
    return d;
}

std::string_view ThriftReader::read_binary() {
    const uint64_t n = read_varint();
    if (n > remaining()) {
        fail("thrift string of {} bytes at byte {} runs past the end ({} bytes left)", n, pos_,
             remaining());
    }
    std::string_view v(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return v;
}

void ThriftReader::begin_struct() {
    if (depth_ >= kMaxDepth) fail("thrift structs nested deeper than {}", kMaxDepth);
    ++depth_;
    last_field_[depth_] = 0;
}

bool ThriftReader::next_field(int16_t& id, ThriftType& type) {
    const uint8_t header = read_u8();
    const uint8_t t = header & 0x0f;
    if (t == 0) {
        if (depth_ > 0) --depth_;
        return false;
    }
    if (!is_known_type(t)) fail("unknown thrift type {} at byte {}", t, pos_ - 1);
    const int delta = header >> 4;
    id = delta != 0 ? static_cast<int16_t>(last_field_[depth_] + delta) : read_i16();
    last_field_[depth_] = id;
    type = static_cast<ThriftType>(t);
    return true;
}

uint32_t ThriftReader::begin_list(ThriftType& element_type) {
    const uint8_t header = read_u8();
    uint64_t n = header >> 4;
    if (n == 15) n = read_varint();
    const uint8_t t = header & 0x0f;
    if (t == 0 || !is_known_type(t))
        fail("unknown thrift list element type {} at byte {}", t, pos_);
    element_type = static_cast<ThriftType>(t);
    if (n > remaining() / thrift_min_element_bytes(element_type)) {
        fail("thrift list of {} elements at byte {} cannot fit in the {} bytes left", n, pos_,
             remaining());
    }
    return static_cast<uint32_t>(n);
}

bool ThriftReader::read_list_bool() {
    // Writers disagree on false (0 or 2); anything but 1 is false.
    return read_u8() == 1;
}

void ThriftReader::skip(ThriftType type) {
    skip_at_depth(type, depth_);
}

void ThriftReader::skip_at_depth(ThriftType type, int depth) {
    if (depth >= kMaxDepth) fail("thrift values nested deeper than {}", kMaxDepth);
    switch (type) {
        case ThriftType::BoolTrue:
        case ThriftType::BoolFalse:
            // Inside a field the value is the header's type; skip() is only called for fields,
            // lists of bools are handled below.
            return;
        case ThriftType::Byte:
            read_u8();
            return;
        case ThriftType::I16:
        case ThriftType::I32:
        case ThriftType::I64:
            read_varint();
            return;
        case ThriftType::Double:
            read_double();
            return;
        case ThriftType::Binary:
            read_binary();
            return;
        case ThriftType::List:
        case ThriftType::Set: {
            ThriftType element;
            const uint32_t n = begin_list(element);
            for (uint32_t i = 0; i < n; ++i) {
                if (element == ThriftType::BoolTrue || element == ThriftType::BoolFalse) {
                    read_u8();
                } else {
                    skip_at_depth(element, depth + 1);
                }
            }
            return;
        }
        case ThriftType::Map: {
            const uint64_t n = read_varint();
            if (n == 0) return;
            const uint8_t kv = read_u8();
            const uint8_t kt = kv >> 4, vt = kv & 0x0f;
            if (kt == 0 || vt == 0 || !is_known_type(kt) || !is_known_type(vt)) {
                fail("unknown thrift map types {}/{} at byte {}", kt, vt, pos_);
            }
            const auto key = static_cast<ThriftType>(kt), value = static_cast<ThriftType>(vt);
            if (n >
                remaining() / (thrift_min_element_bytes(key) + thrift_min_element_bytes(value))) {
                fail("thrift map of {} entries at byte {} cannot fit in the {} bytes left", n, pos_,
                     remaining());
            }
            for (uint64_t i = 0; i < n; ++i) {
                for (ThriftType t : {key, value}) {
                    if (t == ThriftType::BoolTrue || t == ThriftType::BoolFalse) {
                        read_u8();
                    } else {
                        skip_at_depth(t, depth + 1);
                    }
                }
            }
            return;
        }
        case ThriftType::Struct: {
            for (;;) {
                const uint8_t header = read_u8();
                const uint8_t t = header & 0x0f;
                if (t == 0) return;
                if (!is_known_type(t)) fail("unknown thrift type {} at byte {}", t, pos_ - 1);
                if ((header >> 4) == 0) read_i16();
                skip_at_depth(static_cast<ThriftType>(t), depth + 1);
            }
        }
        case ThriftType::Stop:
            break;
    }
    fail("cannot skip thrift type {} at byte {}", static_cast<int>(type), pos_);
}

}  // namespace agpt::parquet
