// libFuzzer target for the parquet reader: each input is tried as a whole file (footer, page
// headers, decompression, levels and values of every string column, inspect's output), as a bare
// footer, as a run of page headers, as RLE / bit-packed data and as compressed page data.
// Any Error is the expected outcome for bad input; crashes, sanitizer reports, hangs and
// allocations over -malloc_limit_mb are what the fuzzer looks for. See tests/parquet_fuzz.cmake.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "data/parquet/compression.h"
#include "data/parquet/encodings.h"
#include "data/parquet/parquet_inspect.h"
#include "data/parquet/parquet_reader.h"

using namespace agpt::parquet;

namespace {

// Tight limits, so that allocations a hostile file could force stay far below the fuzzer's
// malloc limit and only unbounded ones trip it.
constexpr ReaderLimits kLimits{
    .max_footer_bytes = size_t{1} << 20,
    .max_page_bytes = size_t{16} << 20,
    .max_batch_bytes = uint64_t{64} << 20,
};

void whole_file(const uint8_t* data, size_t size) {
    try {
        ParquetFile file("fuzz.parquet", memory_source(data, size), kLimits);
        describe_parquet(file);
        TextBatch batch;
        for (size_t c = 0; c < file.metadata().columns.size(); ++c) {
            for (size_t g = 0; g < file.num_row_groups(); ++g) {
                try {
                    file.page_headers(g, c);
                    file.read_text(g, c, batch);
                } catch (const agpt::Error&) {
                }
            }
        }
        if (!file.metadata().columns.empty()) {
            preview_column(file, file.metadata().columns[0].path, 3);
        }
    } catch (const agpt::Error&) {
    }
}

void footer(const uint8_t* data, size_t size) {
    try {
        parse_file_metadata(data, size);
    } catch (const agpt::Error&) {
    }
}

void page_headers(const uint8_t* data, size_t size) {
    try {
        for (size_t pos = 0; pos < size;) {
            size_t header = 0;
            const PageHeader h = parse_page_header(data + pos, size - pos, header);
            pos += header + static_cast<size_t>(h.compressed_page_size);
        }
    } catch (const agpt::Error&) {
    }
}

void rle(const uint8_t* data, size_t size) {
    if (size < 1) return;
    try {
        RleBitPackedDecoder d(data + 1, size - 1, data[0] % 33);
        RleBitPackedDecoder::Run run;
        uint64_t total = 0;
        while (total < (uint64_t{1} << 32) && d.next(run, 1000)) total += run.count;
    } catch (const agpt::Error&) {
    }
}

void decompress(const uint8_t* data, size_t size) {
    if (size < 3) return;
    const Codec codecs[] = {Codec::Uncompressed, Codec::Snappy, Codec::Gzip, Codec::Zstd};
    const Codec codec = codecs[data[0] % 4];
    const size_t dst_size = static_cast<size_t>(data[1]) << 8 | data[2];
    try {
        Decompressor d;
        d.check_size(codec, data + 3, size - 3, dst_size);
        std::vector<uint8_t> dst(dst_size);
        d.decompress(codec, data + 3, size - 3, dst.data(), dst_size);
    } catch (const agpt::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    whole_file(data, size);
    footer(data, size);
    page_headers(data, size);
    rle(data, size);
    decompress(data, size);
    return 0;
}
