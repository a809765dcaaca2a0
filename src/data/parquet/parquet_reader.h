#pragma once
// Reading the string (BYTE_ARRAY) columns of parquet files, without Arrow.
//
// A ParquetFile reads and validates the footer once; read_text() then decodes one column of one
// row group: only that column chunk's bytes are read, pages are decompressed one at a time, and
// the non-null values come out in row order as one TextBatch. Nulls are skipped; empty strings
// are documents. Memory is bounded by the largest row group's column (plus one page), and by
// ReaderLimits against files that claim more than they hold.
//
// TextColumnReader chains many files: it yields one TextBatch per row group, in file order and
// row-group order, decoding ahead on worker threads while keeping a bounded window in flight.
//
// Every problem is an agpt::Error whose one line names the file, and the row group and column
// where one is involved: "x.parquet: row group 2, column 'text': corrupt snappy data".
//
// Intended usage:
//   TextColumnReader reader({"a.parquet", "b.parquet"}, {.column = "text", .threads = 4});
//   TextBatch batch;
//   while (reader.next(batch))
//       for (size_t i = 0; i < batch.size(); ++i) consume(batch[i]);
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "data/parquet/parquet_metadata.h"

namespace agpt::parquet {

// Caps that turn hostile or absurd files into errors instead of huge allocations. The defaults
// are far above what real writers produce (pyarrow: 1 MiB pages, footers of kilobytes).
struct ReaderLimits {
    size_t max_footer_bytes = size_t{16} << 20;
    size_t max_page_bytes = size_t{256} << 20;  // one page, compressed or not
    // Decoded text of one column chunk, counting 8 bytes of bookkeeping per document.
    uint64_t max_batch_bytes = uint64_t{4} << 30;
};

// Random access to a file's bytes; read() must be safe to call from several threads at once.
class ByteSource {
  public:
    virtual ~ByteSource() = default;
    virtual uint64_t size() const = 0;
    // Reads exactly n bytes at offset (the caller keeps offset + n <= size()).
    virtual void read(uint64_t offset, size_t n, uint8_t* out) const = 0;
};

std::shared_ptr<ByteSource> open_file_source(const std::string& path);
// Views caller-owned bytes, which must outlive the source (tests and the fuzzer).
std::shared_ptr<ByteSource> memory_source(const uint8_t* data, size_t size);

// The documents of one column chunk, laid end to end.
struct TextBatch {
    std::string text;
    std::vector<uint64_t> ends;  // document i is text[ends[i-1], ends[i])
    uint64_t nulls = 0;          // null values skipped

    size_t size() const { return ends.size(); }
    std::string_view operator[](size_t i) const {
        const uint64_t begin = i == 0 ? 0 : ends[i - 1];
        return std::string_view(text).substr(begin, ends[i] - begin);
    }
    void clear() {
        text.clear();
        ends.clear();
        nulls = 0;
    }
};

// Receives a column chunk's values in row order, as read_values() decodes them.
class ValueSink {
  public:
    virtual ~ValueSink() = default;
    // The value v, `count` times in a row (dictionary runs repeat one value).
    virtual void values(std::string_view v, uint64_t count) = 0;
    virtual void nulls(uint64_t count) = 0;
    // True once the sink wants no more values (decoding stops early).
    virtual bool full() const { return false; }
};

// One page as its header describes it (for inspection).
struct PageSummary {
    PageType type = PageType::DataPage;
    Encoding encoding = Encoding::Plain;
    int32_t num_values = 0;
    int32_t compressed_size = 0;
    int32_t uncompressed_size = 0;
};

// Per-thread buffers and decompressor state, reused across column chunks.
struct DecodeScratch;
std::unique_ptr<DecodeScratch, void (*)(DecodeScratch*)> make_decode_scratch();

class ParquetFile {
  public:
    // Reads and validates the footer. `name` is what errors call the file.
    ParquetFile(std::string name, std::shared_ptr<ByteSource> source, ReaderLimits limits = {});
    static ParquetFile open(const std::string& path, ReaderLimits limits = {});

    const std::string& name() const { return name_; }
    uint64_t file_size() const { return file_size_; }
    uint64_t footer_size() const { return footer_size_; }
    const FileMetadata& metadata() const { return metadata_; }
    size_t num_row_groups() const { return metadata_.row_groups.size(); }

    // Index of the leaf column with this dotted path; Error listing the columns if none.
    size_t column_index(std::string_view path) const;
    // Error unless the column holds flat BYTE_ARRAY values (what read_text can decode).
    void check_text_column(size_t column) const;

    // Decodes one column chunk's non-null values into `out` (cleared first).
    void read_text(size_t row_group, size_t column, TextBatch& out,
                   DecodeScratch* scratch = nullptr) const;
    // The same, value by value, with null runs; stops once sink.full().
    void read_values(size_t row_group, size_t column, ValueSink& sink,
                     DecodeScratch* scratch = nullptr) const;

    // The headers of every page in a column chunk (any column type); reads the chunk's bytes.
    std::vector<PageSummary> page_headers(size_t row_group, size_t column) const;

  private:
    // Checks the chunk's byte range against the file and returns [start, start + size).
    std::pair<uint64_t, uint64_t> chunk_range(const ColumnChunkMeta& meta) const;
    void decode_chunk(size_t row_group, size_t column, ValueSink& sink,
                      DecodeScratch& scratch) const;

    std::string name_;
    std::shared_ptr<ByteSource> source_;
    ReaderLimits limits_;
    uint64_t file_size_ = 0;
    uint64_t footer_size_ = 0;
    FileMetadata metadata_;
};

struct TextReaderOptions {
    std::string column = "text";
    int threads = 1;  // decoding threads; 1 decodes on the caller's thread
    ReaderLimits limits{};
};

// Yields the documents of one string column across files, one row group per batch, in file and
// row order. Opens every footer up front (so a bad file fails before any text is served). With
// threads > 1, at most threads + 1 row groups are decoded ahead of the consumer.
class TextColumnReader {
  public:
    TextColumnReader(std::vector<std::string> paths, TextReaderOptions options = {});
    ~TextColumnReader();
    TextColumnReader(const TextColumnReader&) = delete;
    TextColumnReader& operator=(const TextColumnReader&) = delete;

    // Replaces `batch` with the next row group's documents (empty row groups included);
    // false after the last. Rethrows, in order, an Error a worker hit.
    bool next(TextBatch& batch);

    // Where the batch last returned by next() came from.
    const std::string& batch_file() const;
    size_t batch_row_group() const;
    // Row groups in all files, and those returned so far.
    size_t num_batches() const { return tasks_.size(); }
    size_t batches_done() const { return delivered_; }

  private:
    struct Task {
        size_t file, row_group;
    };
    struct Slot {
        TextBatch batch;
        std::exception_ptr error;
        bool ready = false;
    };
    void worker();
    void decode(size_t task, TextBatch& out, DecodeScratch& scratch) const;

    std::vector<ParquetFile> files_;
    std::vector<size_t> columns_;  // the column's index in each file
    std::vector<Task> tasks_;
    std::unique_ptr<DecodeScratch, void (*)(DecodeScratch*)> scratch_;
    size_t delivered_ = 0;
    bool failed_ = false;

    // Decode-ahead state, guarded by mutex_.
    std::vector<Slot> slots_;
    size_t next_task_ = 0;
    bool stop_ = false;
    std::mutex mutex_;
    std::condition_variable work_cv_, ready_cv_;
    std::vector<std::thread> workers_;
};

}  // namespace agpt::parquet
