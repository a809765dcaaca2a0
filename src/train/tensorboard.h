#pragma once
// TensorBoard event files (which W&B also imports): TFRecord framing around Event protocol
// buffers holding scalar summaries. Written by hand — the format is small and stable — so that
// no protobuf or TensorFlow dependency is needed.
//
// TFRecord: uint64 length, uint32 masked_crc32c(length), data, uint32 masked_crc32c(data).
// Event:    1: double wall_time, 2: int64 step, 3: string file_version, 5: Summary.
// Summary:  1: repeated Value;  Value: 1: string tag, 2: float simple_value.
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace agpt {

// CRC-32C (Castagnoli), as TFRecord uses it, and TFRecord's masking of it.
uint32_t crc32c(const void* data, std::size_t n);
uint32_t masked_crc32c(const void* data, std::size_t n);

class TensorBoardWriter {
  public:
    // Creates <dir>/events.out.tfevents.<unix time>.agpt and writes the version record.
    explicit TensorBoardWriter(const std::string& dir);
    ~TensorBoardWriter();
    TensorBoardWriter(const TensorBoardWriter&) = delete;
    TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

    // One event with several scalars at one step; flushed at once.
    void scalars(long step, const std::vector<std::pair<std::string, double>>& values);
    const std::string& path() const { return path_; }

  private:
    void record(const std::string& event);
    std::string path_;
    std::FILE* f_ = nullptr;
};

}  // namespace agpt
