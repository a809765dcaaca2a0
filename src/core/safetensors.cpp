#include "core/safetensors.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace agpt {

// Tensor bytes are copied as they sit in memory; the format is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

namespace {

// Far above any real header; refusing larger ones stops a corrupt length from driving a huge
// allocation before the file size check could catch it.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool parse_dtype(const std::string& s, SafetensorsDtype* out) {
    static const std::pair<const char*, SafetensorsDtype> table[] = {
        {"F32", SafetensorsDtype::F32},
        {"F64", SafetensorsDtype::F64},
        {"I32", SafetensorsDtype::I32},
        {"I64", SafetensorsDtype::I64}};
    for (const auto& [name, d] : table) {
        if (s == name) {
            *out = d;
            return true;
        }
    }
    return false;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    return fmt::format("[{}]", fmt::join(shape, ","));
}

// numel · elem, or false on overflow or a negative dimension.
bool checked_nbytes(const std::vector<int64_t>& shape, std::size_t elem, std::size_t* out) {
    std::size_t n = elem;
    for (int64_t d : shape) {
        if (d < 0) return false;
        const auto u = static_cast<std::size_t>(d);
        if (u != 0 && n > std::numeric_limits<std::size_t>::max() / u) return false;
        n *= u;
    }
    *out = n;
    return true;
}

void write_all(int fd, const void* data, std::size_t n, const std::string& path) {
    const auto* p = static_cast<const unsigned char*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            fail("{}: write failed: {}", path, std::strerror(errno));
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

}  // namespace

std::size_t safetensors_dtype_size(SafetensorsDtype d) {
    switch (d) {
        case SafetensorsDtype::F32:
            return 4;
        case SafetensorsDtype::F64:
            return 8;
        case SafetensorsDtype::I32:
            return 4;
        case SafetensorsDtype::I64:
            return 8;
    }
    return 0;
}

const char* safetensors_dtype_name(SafetensorsDtype d) {
    switch (d) {
        case SafetensorsDtype::F32:
            return "F32";
        case SafetensorsDtype::F64:
            return "F64";
        case SafetensorsDtype::I32:
            return "I32";
        case SafetensorsDtype::I64:
            return "I64";
    }
    return "?";
}

int64_t SafetensorsTensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::add_bytes(const std::string& name, SafetensorsDtype dtype,
                                  const std::vector<int64_t>& shape, const void* data) {
    if (name.empty() || name == "__metadata__")
        fail("safetensors writer: invalid tensor name '{}'", name);
    for (const auto& t : tensors_)
        if (t.name == name) fail("safetensors writer: tensor '{}' added twice", name);
    std::size_t nbytes = 0;
    if (!checked_nbytes(shape, safetensors_dtype_size(dtype), &nbytes))
        fail("safetensors writer: tensor '{}' has invalid shape {}", name, shape_str(shape));
    SafetensorsTensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape = shape;
    t.begin = data_.size();
    t.end = t.begin + nbytes;
    const auto* p = static_cast<const unsigned char*>(data);
    if (nbytes > 0) data_.insert(data_.end(), p, p + nbytes);
    tensors_.push_back(std::move(t));
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
    metadata_[key] = value;
}

void SafetensorsWriter::write(const std::string& path) const {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    for (const auto& t : tensors_) {
        header[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {t.begin, t.end}}};
    }
    std::string text = header.dump();
    // Padding with spaces to a multiple of 8 keeps every tensor 8-byte aligned when the file is
    // mapped, as the reference implementation does.
    text.append((8 - text.size() % 8) % 8, ' ');
    unsigned char len[8];
    const uint64_t n = text.size();
    std::memcpy(len, &n, 8);

    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("{}: cannot create: {}", tmp, std::strerror(errno));
    try {
        write_all(fd, len, 8, tmp);
        write_all(fd, text.data(), text.size(), tmp);
        write_all(fd, data_.data(), data_.size(), tmp);
        if (::fsync(fd) != 0) fail("{}: fsync failed: {}", tmp, std::strerror(errno));
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) {
        ::unlink(tmp.c_str());
        fail("{}: close failed: {}", tmp, std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        fail("{}: cannot rename {} over it: {}", path, tmp, std::strerror(err));
    }
    // The rename itself is only durable once the directory entry is on disk.
    const auto slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0) fail("{}: cannot determine file size", path);
    in.seekg(0, std::ios::beg);
    bytes_.resize(static_cast<std::size_t>(size));
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes_.data()), size))
        fail("{}: read failed", path);
    parse();
}

void SafetensorsFile::parse() {
    const std::size_t size = bytes_.size();
    if (size < 8) fail("{}: truncated safetensors file ({} bytes, need at least 8)", path_, size);
    uint64_t hlen = 0;
    std::memcpy(&hlen, bytes_.data(), 8);
    if (hlen > size - 8)
        fail(
            "{}: header length {} exceeds the file ({} bytes after the length field); "
            "the file is truncated or not safetensors",
            path_, hlen, size - 8);
    if (hlen > kMaxHeaderBytes) fail("{}: header length {} is implausibly large", path_, hlen);
    data_start_ = 8 + static_cast<std::size_t>(hlen);
    const std::size_t data_size = size - data_start_;

    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes_.begin() + 8, bytes_.begin() + data_start_);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: header is not valid JSON ({})", path_, e.what());
    }
    if (!header.is_object()) fail("{}: header is not a JSON object", path_);

    for (const auto& [key, val] : header.items()) {
        if (key == "__metadata__") {
            if (!val.is_object()) fail("{}: __metadata__ is not an object", path_);
            for (const auto& [mk, mv] : val.items()) {
                if (!mv.is_string()) fail("{}: __metadata__['{}'] is not a string", path_, mk);
                metadata_[mk] = mv.get<std::string>();
            }
            continue;
        }
        if (!val.is_object()) fail("{}: tensor '{}': entry is not an object", path_, key);
        const auto dt = val.find("dtype");
        const auto sh = val.find("shape");
        const auto off = val.find("data_offsets");
        if (dt == val.end() || sh == val.end() || off == val.end())
            fail("{}: tensor '{}': needs dtype, shape and data_offsets", path_, key);
        SafetensorsTensor t;
        t.name = key;
        if (!dt->is_string() || !parse_dtype(dt->get<std::string>(), &t.dtype))
            fail("{}: tensor '{}': unsupported dtype {} (agpt reads F32, F64, I32, I64)", path_,
                 key, dt->dump());
        if (!sh->is_array()) fail("{}: tensor '{}': shape is not an array", path_, key);
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned())
                fail("{}: tensor '{}': shape {} has a non-integer or negative entry", path_, key,
                     sh->dump());
            const uint64_t u = d.get<uint64_t>();
            if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                fail("{}: tensor '{}': shape {} is too large", path_, key, sh->dump());
            t.shape.push_back(static_cast<int64_t>(u));
        }
        if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
            !(*off)[1].is_number_unsigned())
            fail("{}: tensor '{}': data_offsets must be two non-negative integers", path_, key);
        const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
        if (b > e || e > data_size)
            fail("{}: tensor '{}': data_offsets [{}, {}] lie outside the data section ({} bytes)",
                 path_, key, b, e, data_size);
        t.begin = static_cast<std::size_t>(b);
        t.end = static_cast<std::size_t>(e);
        std::size_t want = 0;
        if (!checked_nbytes(t.shape, safetensors_dtype_size(t.dtype), &want) || want != t.nbytes())
            fail("{}: tensor '{}': {} bytes stored but {} of {} needs {}", path_, key, t.nbytes(),
                 shape_str(t.shape), safetensors_dtype_name(t.dtype), want);
        tensors_.emplace(key, std::move(t));
    }

    // The format requires the tensors to tile the data section exactly: overlap means two
    // tensors alias, a gap or tail means bytes nobody accounts for (a sign of corruption).
    std::vector<const SafetensorsTensor*> order;
    for (const auto& [_, t] : tensors_) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    std::size_t pos = 0;
    for (const auto* t : order) {
        if (t->begin < pos)
            fail("{}: tensor '{}' overlaps the tensor before it (offset {} < {})", path_, t->name,
                 t->begin, pos);
        if (t->begin > pos)
            fail("{}: {} unused bytes before tensor '{}' in the data section", path_,
                 t->begin - pos, t->name);
        pos = t->end;
    }
    if (pos != data_size)
        fail("{}: data section is {} bytes but the tensors cover {}", path_, data_size, pos);
}

bool SafetensorsFile::contains(const std::string& name) const {
    return tensors_.count(name) != 0;
}

const SafetensorsTensor& SafetensorsFile::tensor(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("{}: no tensor named '{}'", path_, name);
    return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& [name, _] : tensors_) out.push_back(name);
    return out;
}

const SafetensorsTensor& SafetensorsFile::checked(const std::string& name,
                                                  SafetensorsDtype want) const {
    const SafetensorsTensor& t = tensor(name);
    if (t.dtype != want)
        fail("{}: tensor '{}' is {}, expected {}", path_, name, safetensors_dtype_name(t.dtype),
             safetensors_dtype_name(want));
    return t;
}

const unsigned char* SafetensorsFile::raw(const std::string& name) const {
    return bytes_.data() + data_start_ + tensor(name).begin;
}

template <typename T>
std::vector<T> SafetensorsFile::get(const std::string& name) const {
    const SafetensorsTensor& t = checked(name, safetensors_dtype_of<T>());
    std::vector<T> out(static_cast<std::size_t>(t.numel()));
    // memcpy rather than a cast: foreign files need not align tensors.
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + data_start_ + t.begin, t.nbytes());
    return out;
}

template <typename T>
void SafetensorsFile::read_into(const std::string& name, T* out, std::size_t n) const {
    const SafetensorsTensor& t = checked(name, safetensors_dtype_of<T>());
    if (static_cast<std::size_t>(t.numel()) != n)
        fail("{}: tensor '{}' has {} elements {}, expected {}", path_, name, t.numel(),
             shape_str(t.shape), n);
    if (n > 0) std::memcpy(out, bytes_.data() + data_start_ + t.begin, t.nbytes());
}

template std::vector<float> SafetensorsFile::get<float>(const std::string&) const;
template std::vector<double> SafetensorsFile::get<double>(const std::string&) const;
template std::vector<int32_t> SafetensorsFile::get<int32_t>(const std::string&) const;
template std::vector<int64_t> SafetensorsFile::get<int64_t>(const std::string&) const;
template void SafetensorsFile::read_into<float>(const std::string&, float*, std::size_t) const;
template void SafetensorsFile::read_into<double>(const std::string&, double*, std::size_t) const;
template void SafetensorsFile::read_into<int32_t>(const std::string&, int32_t*, std::size_t) const;
template void SafetensorsFile::read_into<int64_t>(const std::string&, int64_t*, std::size_t) const;

}  // namespace agpt
