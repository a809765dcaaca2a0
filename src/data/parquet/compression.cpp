#include "data/parquet/compression.h"

#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>

#include "core/error.h"

namespace agpt::parquet {

namespace {

// Deflate cannot expand data more than about 1032:1 (a 258-byte match per 2 bits); a page
// claiming more is lying, and we refuse it before allocating.
constexpr uint64_t kMaxDeflateRatio = 1032;

void inflate_gzip(const uint8_t* src, size_t src_size, uint8_t* dst, size_t dst_size) {
    z_stream s{};
    // 15 + 32: accept both gzip and zlib headers, as other parquet readers do.
    if (inflateInit2(&s, 15 + 32) != Z_OK) fail("cannot initialise zlib");
    struct End {
        z_stream* s;
        ~End() { inflateEnd(s); }
    } end{&s};
    size_t in_pos = 0, out_pos = 0;
    for (;;) {
        const size_t in_chunk = std::min<size_t>(src_size - in_pos, UINT_MAX);
        const size_t out_chunk = std::min<size_t>(dst_size - out_pos, UINT_MAX);
        s.next_in = const_cast<Bytef*>(src + in_pos);
        s.avail_in = static_cast<uInt>(in_chunk);
        s.next_out = dst + out_pos;
        s.avail_out = static_cast<uInt>(out_chunk);
        const int rc = inflate(&s, Z_NO_FLUSH);
        in_pos += in_chunk - s.avail_in;
        out_pos += out_chunk - s.avail_out;
        if (rc == Z_STREAM_END) {
            // Concatenated gzip members are one stream to gzip(1); read them all.
            if (in_pos < src_size && out_pos < dst_size) {
                if (inflateReset(&s) != Z_OK) fail("cannot reset zlib");
                continue;
            }
            break;
        }
        if (rc == Z_OK) {
            if (out_pos == dst_size && in_pos < src_size) {
                fail("gzip data decompresses to more than the {} bytes the page header says",
                     dst_size);
            }
            if (in_chunk == 0 && out_chunk == 0) break;
            continue;
        }
        if (rc == Z_BUF_ERROR && out_pos == dst_size) {
            fail("gzip data decompresses to more than the {} bytes the page header says", dst_size);
        }
        if (rc == Z_BUF_ERROR) fail("gzip data ends early");
        fail("corrupt gzip data ({})", s.msg ? s.msg : "zlib error " + std::to_string(rc));
    }
    if (out_pos != dst_size) {
        fail("gzip data decompresses to {} bytes, not the {} the page header says", out_pos,
             dst_size);
    }
}

}  // namespace

bool codec_supported(Codec codec) {
    return codec == Codec::Uncompressed || codec == Codec::Snappy || codec == Codec::Gzip ||
           codec == Codec::Zstd;
}

Decompressor::Decompressor() = default;

Decompressor::~Decompressor() {
    if (zstd_) ZSTD_freeDCtx(zstd_);
}

void Decompressor::check_size(Codec codec, const uint8_t* src, size_t src_size,
                              size_t dst_size) const {
    if (src_size == 0 && dst_size == 0) return;
    switch (codec) {
        case Codec::Uncompressed:
            if (src_size != dst_size) {
                fail("uncompressed page holds {} bytes but its header says {}", src_size, dst_size);
            }
            return;
        case Codec::Snappy: {
            size_t n = 0;
            if (snappy_uncompressed_length(reinterpret_cast<const char*>(src), src_size, &n) !=
                SNAPPY_OK) {
                fail("corrupt snappy data (bad length header)");
            }
            if (n != dst_size) {
                fail("snappy data decompresses to {} bytes, not the {} the page header says", n,
                     dst_size);
            }
            return;
        }
        case Codec::Gzip:
            if (dst_size / kMaxDeflateRatio > src_size) {
                fail("{} bytes of gzip data cannot decompress to the {} the page header says",
                     src_size, dst_size);
            }
            return;
        case Codec::Zstd: {
            const unsigned long long n = ZSTD_getFrameContentSize(src, src_size);
            if (n == ZSTD_CONTENTSIZE_ERROR) fail("corrupt zstd data (bad frame header)");
            if (n == ZSTD_CONTENTSIZE_UNKNOWN) return;
            // Several frames may add up to the page; one frame must hold all of it.
            const bool one_frame = ZSTD_findFrameCompressedSize(src, src_size) == src_size;
            if (n > dst_size || (one_frame && n != dst_size)) {
                fail("zstd data decompresses to {} bytes, not the {} the page header says", n,
                     dst_size);
            }
            return;
        }
        default:
            break;
    }
    fail("unsupported compression {}", codec_name(codec));
}

void Decompressor::decompress(Codec codec, const uint8_t* src, size_t src_size, uint8_t* dst,
                              size_t dst_size) {
    if (src_size == 0 && dst_size == 0) return;
    switch (codec) {
        case Codec::Uncompressed:
            check_size(codec, src, src_size, dst_size);
            std::copy(src, src + src_size, dst);
            return;
        case Codec::Snappy: {
            size_t n = dst_size;
            if (snappy_uncompress(reinterpret_cast<const char*>(src), src_size,
                                  reinterpret_cast<char*>(dst), &n) != SNAPPY_OK) {
                fail("corrupt snappy data");
            }
            if (n != dst_size) {
                fail("snappy data decompresses to {} bytes, not the {} the page header says", n,
                     dst_size);
            }
            return;
        }
        case Codec::Gzip:
            inflate_gzip(src, src_size, dst, dst_size);
            return;
        case Codec::Zstd: {
            if (!zstd_) {
                zstd_ = ZSTD_createDCtx();
                if (!zstd_) fail("cannot create a zstd context");
            }
            const size_t n = ZSTD_decompressDCtx(zstd_, dst, dst_size, src, src_size);
            if (ZSTD_isError(n)) fail("corrupt zstd data ({})", ZSTD_getErrorName(n));
            if (n != dst_size) {
                fail("zstd data decompresses to {} bytes, not the {} the page header says", n,
                     dst_size);
            }
            return;
        }
        default:
            break;
    }
    fail("unsupported compression {}", codec_name(codec));
}

}  // namespace agpt::parquet
