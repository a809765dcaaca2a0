#include "train/tensorboard.h"

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace agpt {

namespace {

std::array<uint32_t, 256> make_crc32c_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[i] = c;
    }
    return t;
}

// Protocol-buffer wire encoding, only what Event needs.
void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7F) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, int field, int wire_type) {
    put_varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}
template <typename T>
void put_fixed(std::string& out, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // little-endian on every supported platform
    out.append(b, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
    put_tag(out, field, 2);
    put_varint(out, bytes.size());
    out += bytes;
}

double wall_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

uint32_t crc32c(const void* data, std::size_t n) {
    static const std::array<uint32_t, 256> table = make_crc32c_table();
    const auto* p = static_cast<const unsigned char*>(data);
    uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, std::size_t n) {
    const uint32_t c = crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("{}: cannot create TensorBoard folder: {}", dir, ec.message());
    path_ = (std::filesystem::path(dir) /
             ("events.out.tfevents." + std::to_string(static_cast<long>(wall_time())) + ".agpt"))
                .string();
    f_ = std::fopen(path_.c_str(), "ab");
    if (!f_) fail("{}: cannot open for writing", path_);
    std::string event;
    put_tag(event, 1, 1);
    put_fixed(event, wall_time());
    put_bytes(event, 3, "brain.Event:2");
    record(event);
}

TensorBoardWriter::~TensorBoardWriter() {
    if (f_) std::fclose(f_);
}

void TensorBoardWriter::scalars(long step,
                                const std::vector<std::pair<std::string, double>>& values) {
    std::string summary;
    for (const auto& [tag, value] : values) {
        std::string v;
        put_bytes(v, 1, tag);
        put_tag(v, 2, 5);
        put_fixed(v, static_cast<float>(value));
        put_bytes(summary, 1, v);
    }
    std::string event;
    put_tag(event, 1, 1);
    put_fixed(event, wall_time());
    put_tag(event, 2, 0);
    put_varint(event, static_cast<uint64_t>(step));
    put_bytes(event, 5, summary);
    record(event);
}

void TensorBoardWriter::record(const std::string& event) {
    std::string rec;
    const uint64_t len = event.size();
    put_fixed(rec, len);
    put_fixed(rec, masked_crc32c(&len, sizeof(len)));
    rec += event;
    put_fixed(rec, masked_crc32c(event.data(), event.size()));
    if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size() || std::fflush(f_) != 0)
        fail("{}: write failed", path_);
}

}  // namespace agpt
