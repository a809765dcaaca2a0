#include "data/token_shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace agpt {

namespace fs = std::filesystem;

void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       uint32_t max_token_id) {
    const bool wide = max_token_id > 0xFFFF;
    int32_t header[256] = {};
    header[0] = wide ? kShardMagicU32 : kShardMagicU16;
    header[1] = wide ? kShardVersionU32 : kShardVersionU16;
    if (tokens.size() > static_cast<std::size_t>(INT32_MAX))
        fail("{}: {} tokens do not fit one shard's int32 count", path, tokens.size());
    header[2] = static_cast<int32_t>(tokens.size());
    std::vector<unsigned char> bytes(kShardHeaderBytes + tokens.size() * (wide ? 4 : 2));
    std::memcpy(bytes.data(), header, kShardHeaderBytes);
    unsigned char* body = bytes.data() + kShardHeaderBytes;
    for (std::size_t i = 0; i < tokens.size(); i++) {
        if (tokens[i] > max_token_id)
            fail("{}: token {} at {} exceeds the vocabulary's largest id {}", path, tokens[i], i,
                 max_token_id);
        if (wide) {
            std::memcpy(body + 4 * i, &tokens[i], 4);
        } else {
            const auto t = static_cast<uint16_t>(tokens[i]);
            std::memcpy(body + 2 * i, &t, 2);
        }
    }
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("{}: cannot create", tmp);
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0) {
            ::close(fd);
            fs::remove(tmp);
            fail("{}: write failed", tmp);
        }
        done += static_cast<std::size_t>(n);
    }
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) fail("{}: fsync failed", tmp);
    fs::rename(tmp, path);
}

TokenShard::TokenShard(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("{}: cannot open token shard", path);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        fail("{}: cannot stat", path);
    }
    const auto file_bytes = static_cast<std::size_t>(st.st_size);
    if (file_bytes < kShardHeaderBytes) {
        ::close(fd);
        fail("{}: {} bytes is shorter than the 1024-byte shard header (truncated?)", path,
             file_bytes);
    }
    map_ = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        fail("{}: mmap failed", path);
    }
    map_bytes_ = file_bytes;
    int32_t header[3];
    std::memcpy(header, map_, sizeof(header));
    if (header[0] == kShardMagicU16 && header[1] == kShardVersionU16) {
        wide_ = false;
    } else if (header[0] == kShardMagicU32 && header[1] == kShardVersionU32) {
        wide_ = true;
    } else {
        ::munmap(map_, map_bytes_);
        map_ = nullptr;
        fail("{}: not a token shard (magic {} version {}; expected {}/{} or {}/{})", path,
             header[0], header[1], kShardMagicU16, kShardVersionU16, kShardMagicU32,
             kShardVersionU32);
    }
    const std::size_t width = wide_ ? 4 : 2;
    if (header[2] < 0 ||
        kShardHeaderBytes + static_cast<std::size_t>(header[2]) * width != file_bytes) {
        const std::size_t have = (file_bytes - kShardHeaderBytes) / width;
        ::munmap(map_, map_bytes_);
        map_ = nullptr;
        fail(
            "{}: header says {} tokens, the file holds {} bytes of tokens ({} tokens); "
            "truncated or corrupt",
            path, header[2], file_bytes - kShardHeaderBytes, have);
    }
    count_ = static_cast<std::size_t>(header[2]);
    data_ = static_cast<const unsigned char*>(map_) + kShardHeaderBytes;
}

TokenShard::~TokenShard() {
    if (map_) ::munmap(map_, map_bytes_);
}

TokenShard::TokenShard(TokenShard&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      map_bytes_(o.map_bytes_),
      data_(o.data_),
      count_(o.count_),
      wide_(o.wide_) {
    o.map_ = nullptr;
    o.data_ = nullptr;
    o.count_ = 0;
}

void TokenShard::copy(std::size_t begin, std::size_t n, int32_t* out) const {
    if (begin + n > count_)
        fail("{}: read of [{}, {}) past {} tokens", path_, begin, begin + n, count_);
    for (std::size_t i = 0; i < n; i++) out[i] = static_cast<int32_t>(at(begin + i));
}

std::vector<std::string> list_token_shards(const std::string& folder_or_file) {
    if (fs::is_regular_file(folder_or_file)) return {folder_or_file};
    if (!fs::is_directory(folder_or_file)) fail("{}: no such shard file or folder", folder_or_file);
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(folder_or_file))
        if (e.is_regular_file() && e.path().extension() == ".bin") out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    if (out.empty()) fail("{}: no .bin token shards in this folder", folder_or_file);
    return out;
}

}  // namespace agpt
