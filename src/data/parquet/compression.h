#pragma once
// Page decompression on Debian's libraries: snappy, zlib (GZIP) and zstd. Every call names the
// exact size the page header promises; data that decompresses to any other size is an Error, and
// the promised size is checked against what the compressed stream itself declares before the
// caller allocates for it.
#include <cstddef>
#include <cstdint>

#include "data/parquet/parquet_metadata.h"

typedef struct ZSTD_DCtx_s ZSTD_DCtx;

namespace agpt::parquet {

bool codec_supported(Codec codec);

// Holds per-thread decoder state (a zstd context); not shareable between threads.
class Decompressor {
  public:
    Decompressor();
    ~Decompressor();
    Decompressor(const Decompressor&) = delete;
    Decompressor& operator=(const Decompressor&) = delete;

    // Throws Error if `dst_size` is not a size this compressed stream can produce (call before
    // allocating dst_size bytes for an untrusted header).
    void check_size(Codec codec, const uint8_t* src, size_t src_size, size_t dst_size) const;

    // Decompresses exactly dst_size bytes into dst; Error for corrupt data, any other size or an
    // unsupported codec. Does not call check_size.
    void decompress(Codec codec, const uint8_t* src, size_t src_size, uint8_t* dst,
                    size_t dst_size);

  private:
    ZSTD_DCtx* zstd_ = nullptr;
};

}  // namespace agpt::parquet
