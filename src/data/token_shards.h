#pragma once
// Token shards in llm.c's format, which llm.c and modded-nanogpt users already have:
// a header of 256 little-endian int32 — [0] magic, [1] version, [2] token count — then the tokens:
//   magic 20240520, version 1: uint16 tokens (vocabularies up to 65,536)
//   magic 20240801, version 7: uint32 tokens (larger vocabularies)
// Readers map the file and check that the header's count matches the file size exactly.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace agpt {

inline constexpr int32_t kShardMagicU16 = 20240520;
inline constexpr int32_t kShardVersionU16 = 1;
inline constexpr int32_t kShardMagicU32 = 20240801;
inline constexpr int32_t kShardVersionU32 = 7;
inline constexpr std::size_t kShardHeaderBytes = 256 * sizeof(int32_t);

// Writes tokens to path through "<path>.tmp" + fsync + rename. uint16 when every id fits
// (max_token_id < 65536), else uint32. Throws Error naming the file.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                       uint32_t max_token_id);

// A read-only memory-mapped shard.
class TokenShard {
  public:
    // Maps and validates the file; throws Error naming it: too short for a header, wrong magic,
    // unknown version, or a token count that disagrees with the file size.
    explicit TokenShard(const std::string& path);
    ~TokenShard();
    TokenShard(TokenShard&& other) noexcept;
    TokenShard& operator=(TokenShard&&) = delete;
    TokenShard(const TokenShard&) = delete;
    TokenShard& operator=(const TokenShard&) = delete;

    const std::string& path() const { return path_; }
    std::size_t size() const { return count_; }
    bool wide() const { return wide_; }  // uint32 tokens
    uint32_t at(std::size_t i) const {
        return wide_ ? static_cast<const uint32_t*>(data_)[i]
                     : static_cast<const uint16_t*>(data_)[i];
    }
    // Copies tokens [begin, begin+n) as int32.
    void copy(std::size_t begin, std::size_t n, int32_t* out) const;

  private:
    std::string path_;
    void* map_ = nullptr;
    std::size_t map_bytes_ = 0;
    const void* data_ = nullptr;
    std::size_t count_ = 0;
    bool wide_ = false;
};

// The shard files of a folder (*.bin, sorted by name) or a single file.
std::vector<std::string> list_token_shards(const std::string& folder_or_file);

}  // namespace agpt
