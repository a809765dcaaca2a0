#include "data/parquet/parquet_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "data/parquet/compression.h"
#include "data/parquet/encodings.h"

namespace agpt::parquet {

namespace {

constexpr char kMagic[4] = {'P', 'A', 'R', '1'};
// Footer length (4 bytes) and closing magic (4 bytes).
constexpr uint64_t kTailBytes = 8;

// Opens the file for each read: a reader over thousands of files (a FineWeb dump has ~2,000)
// must not hold a descriptor per file, and one open per column chunk costs nothing next to it.
class FileSource final : public ByteSource {
  public:
    explicit FileSource(std::string path) : path_(std::move(path)) {
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail("{}: cannot open: {}", path_, std::strerror(errno));
        struct stat st {};
        const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        ::close(fd);
        if (!regular) fail("{}: not a regular file", path_);
        size_ = static_cast<uint64_t>(st.st_size);
    }
    uint64_t size() const override { return size_; }
    void read(uint64_t offset, size_t n, uint8_t* out) const override {
        const int fd = open_fd();
        size_t done = 0;
        while (done < n) {
            const ssize_t got =
                ::pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                const int err = errno;
                ::close(fd);
                if (got < 0) {
                    fail("read of {} bytes at offset {} failed: {}", n, offset, std::strerror(err));
                }
                fail("file ended at {} bytes while reading (did it shrink?)", offset + done);
            }
            done += static_cast<size_t>(got);
        }
        ::close(fd);
    }

  private:
    int open_fd() const {
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) fail("cannot reopen the file: {}", std::strerror(errno));
        return fd;
    }

    std::string path_;
    uint64_t size_ = 0;
};

class MemorySource final : public ByteSource {
  public:
    MemorySource(const uint8_t* data, size_t size) : data_(data), size_(size) {}
    uint64_t size() const override { return size_; }
    void read(uint64_t offset, size_t n, uint8_t* out) const override {
        if (offset > size_ || n > size_ - offset) fail("read past the end of the buffer");
        if (n > 0) std::memcpy(out, data_ + offset, n);
    }

  private:
    const uint8_t* data_;
    size_t size_;
};

// A growable byte buffer that does not zero what it hands out (pages are overwritten whole).
class Buffer {
  public:
    uint8_t* get(size_t n) {
        if (n > capacity_) {
            data_ = std::make_unique_for_overwrite<uint8_t[]>(n);
            capacity_ = n;
        }
        return data_.get();
    }

  private:
    std::unique_ptr<uint8_t[]> data_;
    size_t capacity_ = 0;
};

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

class BatchSink final : public ValueSink {
  public:
    BatchSink(TextBatch& batch, uint64_t limit) : batch_(batch), limit_(limit) {}
    void values(std::string_view v, uint64_t count) override {
        const uint64_t used = batch_.text.size() + 8 * batch_.ends.size();
        const uint64_t per = v.size() + 8;
        if (used > limit_ || count > (limit_ - used) / per) {
            fail(
                "the decoded text exceeds the limit of {} bytes per row group "
                "(ReaderLimits::max_batch_bytes)",
                limit_);
        }
        for (uint64_t i = 0; i < count; ++i) {
            batch_.text.append(v);
            batch_.ends.push_back(batch_.text.size());
        }
    }
    void nulls(uint64_t count) override { batch_.nulls += count; }

  private:
    TextBatch& batch_;
    uint64_t limit_;
};

// Hands out a data page's values in the page's value encoding.
class ValueDecoder {
  public:
    ValueDecoder(Encoding encoding, const uint8_t* data, size_t size,
                 const std::vector<std::string_view>* dictionary)
        : encoding_(encoding), data_(data), size_(size), dictionary_(dictionary) {
        if (encoding == Encoding::Plain) {
            plain_ = PlainByteArrayDecoder(data, size);
        } else if (encoding == Encoding::RleDictionary || encoding == Encoding::PlainDictionary) {
            if (!dictionary_) fail("{} page without a dictionary page", encoding_name(encoding));
        } else {
            fail(
                "unsupported value encoding {} (supported: PLAIN, RLE_DICTIONARY, "
                "PLAIN_DICTIONARY)",
                encoding_name(encoding));
        }
    }

    // Passes the next n values to the sink.
    void emit(uint32_t n, ValueSink& sink) {
        if (encoding_ == Encoding::Plain) {
            for (uint32_t i = 0; i < n; ++i) sink.values(plain_.next(), 1);
            return;
        }
        if (!indices_started_) {
            // Pages of nulls only may carry no index bytes at all; read the width lazily.
            if (size_ == 0) fail("dictionary indices are missing");
            const int width = data_[0];
            if (width > 32) fail("dictionary index bit width {} is over 32", width);
            indices_ = RleBitPackedDecoder(data_ + 1, size_ - 1, width);
            indices_started_ = true;
        }
        const auto& dict = *dictionary_;
        while (n > 0) {
            RleBitPackedDecoder::Run run;
            if (!indices_.next(run, n)) fail("dictionary indices end early");
            if (run.repeated) {
                if (run.value >= dict.size()) {
                    fail("dictionary index {} out of range ({} entries)", run.value, dict.size());
                }
                sink.values(dict[run.value], run.count);
            } else {
                for (uint32_t i = 0; i < run.count; ++i) {
                    const uint32_t v = run.values[i];
                    if (v >= dict.size()) {
                        fail("dictionary index {} out of range ({} entries)", v, dict.size());
                    }
                    sink.values(dict[v], 1);
                }
            }
            n -= run.count;
        }
    }

  private:
    Encoding encoding_;
    const uint8_t* data_;
    size_t size_;
    const std::vector<std::string_view>* dictionary_;
    PlainByteArrayDecoder plain_;
    RleBitPackedDecoder indices_;
    bool indices_started_ = false;
};

// Walks definition levels (when the column has any) and sends values and null runs to the sink.
void decode_page_values(uint32_t num_values, int max_def, const uint8_t* levels, size_t levels_size,
                        ValueDecoder& values, ValueSink& sink) {
    if (max_def == 0) {
        values.emit(num_values, sink);
        return;
    }
    RleBitPackedDecoder def(levels, levels_size, bit_width_for(static_cast<uint32_t>(max_def)));
    const auto max = static_cast<uint32_t>(max_def);
    uint32_t left = num_values;
    while (left > 0 && !sink.full()) {
        RleBitPackedDecoder::Run run;
        if (!def.next(run, left)) {
            fail("definition levels end after {} of {} values", num_values - left, num_values);
        }
        if (run.repeated) {
            if (run.value == max) {
                values.emit(run.count, sink);
            } else if (run.value < max) {
                sink.nulls(run.count);
            } else {
                fail("definition level {} above the column's maximum {}", run.value, max);
            }
        } else {
            uint32_t present = 0, absent = 0;
            for (uint32_t i = 0; i < run.count; ++i) {
                const uint32_t level = run.values[i];
                if (level > max)
                    fail("definition level {} above the column's maximum {}", level, max);
                if (level == max) {
                    if (absent) sink.nulls(absent), absent = 0;
                    ++present;
                } else {
                    if (present) values.emit(present, sink), present = 0;
                    ++absent;
                }
            }
            if (present) values.emit(present, sink);
            if (absent) sink.nulls(absent);
        }
        left -= run.count;
    }
}

}  // namespace

struct DecodeScratch {
    Decompressor decompressor;
    Buffer chunk, page, dictionary_page;
    std::vector<std::string_view> dictionary;
};

std::unique_ptr<DecodeScratch, void (*)(DecodeScratch*)> make_decode_scratch() {
    return {new DecodeScratch, [](DecodeScratch* s) { delete s; }};
}

std::shared_ptr<ByteSource> open_file_source(const std::string& path) {
    return std::make_shared<FileSource>(path);
}

std::shared_ptr<ByteSource> memory_source(const uint8_t* data, size_t size) {
    return std::make_shared<MemorySource>(data, size);
}

ParquetFile::ParquetFile(std::string name, std::shared_ptr<ByteSource> source, ReaderLimits limits)
    : name_(std::move(name)), source_(std::move(source)), limits_(limits) {
    file_size_ = source_->size();
    if (file_size_ < 4 + kTailBytes) {
        fail("{}: not a parquet file ({} bytes; too short for the PAR1 magic and a footer)", name_,
             file_size_);
    }
    uint8_t head[4], tail[kTailBytes];
    try {
        source_->read(0, 4, head);
        source_->read(file_size_ - kTailBytes, kTailBytes, tail);
    } catch (const Error& e) {
        fail("{}: {}", name_, e.what());
    }
    if (std::memcmp(tail + 4, "PARE", 4) == 0) {
        fail("{}: the footer is encrypted (PARE); encrypted parquet is not supported", name_);
    }
    if (std::memcmp(head, kMagic, 4) != 0 || std::memcmp(tail + 4, kMagic, 4) != 0) {
        fail("{}: not a parquet file (no PAR1 magic at the {}; truncated or another format?)",
             name_, std::memcmp(head, kMagic, 4) != 0 ? "start" : "end");
    }
    footer_size_ = load_u32(tail);
    if (footer_size_ > file_size_ - 4 - kTailBytes) {
        fail("{}: footer length {} exceeds the file's {} bytes (truncated?)", name_, footer_size_,
             file_size_);
    }
    if (footer_size_ > limits_.max_footer_bytes) {
        fail("{}: footer of {} bytes is over the limit of {} (ReaderLimits::max_footer_bytes)",
             name_, footer_size_, limits_.max_footer_bytes);
    }
    std::vector<uint8_t> footer(footer_size_);
    try {
        source_->read(file_size_ - kTailBytes - footer_size_, footer.size(), footer.data());
        metadata_ = parse_file_metadata(footer.data(), footer.size());
    } catch (const Error& e) {
        fail("{}: corrupt footer: {}", name_, e.what());
    }
}

ParquetFile ParquetFile::open(const std::string& path, ReaderLimits limits) {
    return ParquetFile(path, open_file_source(path), limits);
}

size_t ParquetFile::column_index(std::string_view path) const {
    const auto& cols = metadata_.columns;
    for (size_t i = 0; i < cols.size(); ++i) {
        if (cols[i].path == path) return i;
    }
    std::string names;
    for (const auto& c : cols) {
        if (!names.empty()) names += ", ";
        names += printable(c.path);
    }
    fail("{}: no column '{}' (columns: {})", name_, printable(path), printable(names, 400));
}

void ParquetFile::check_text_column(size_t column) const {
    if (column >= metadata_.columns.size()) fail("{}: no column {}", name_, column);
    const ColumnDescriptor& c = metadata_.columns[column];
    if (c.type != PhysicalType::ByteArray) {
        fail("{}: column '{}' holds {} values; only BYTE_ARRAY (string) columns are decoded", name_,
             printable(c.path), physical_type_name(c.type));
    }
    if (c.max_repetition_level > 0) {
        fail("{}: column '{}' is nested in a repeated field; only flat string columns are decoded",
             name_, printable(c.path));
    }
}

void ParquetFile::read_text(size_t row_group, size_t column, TextBatch& out,
                            DecodeScratch* scratch) const {
    out.clear();
    BatchSink sink(out, limits_.max_batch_bytes);
    read_values(row_group, column, sink, scratch);
}

void ParquetFile::read_values(size_t row_group, size_t column, ValueSink& sink,
                              DecodeScratch* scratch) const {
    check_text_column(column);
    if (row_group >= metadata_.row_groups.size()) {
        fail("{}: no row group {} (the file has {})", name_, row_group,
             metadata_.row_groups.size());
    }
    auto own = scratch ? std::unique_ptr<DecodeScratch, void (*)(DecodeScratch*)>(
                             nullptr, [](DecodeScratch*) {})
                       : make_decode_scratch();
    try {
        decode_chunk(row_group, column, sink, scratch ? *scratch : *own);
    } catch (const Error& e) {
        fail("{}: row group {}, column '{}': {}", name_, row_group,
             printable(metadata_.columns[column].path), e.what());
    }
}

std::pair<uint64_t, uint64_t> ParquetFile::chunk_range(const ColumnChunkMeta& meta) const {
    // Some writers put 0 in dictionary_page_offset for "none"; the chunk starts at its first page.
    uint64_t start = static_cast<uint64_t>(meta.data_page_offset);
    if (meta.has_dictionary_page_offset && meta.dictionary_page_offset > 0 &&
        static_cast<uint64_t>(meta.dictionary_page_offset) < start) {
        start = static_cast<uint64_t>(meta.dictionary_page_offset);
    }
    const uint64_t data_end = file_size_ - kTailBytes - footer_size_;
    const auto size = static_cast<uint64_t>(meta.total_compressed_size);
    if (meta.in_other_file) fail("the column chunk lives in another file (file_path is set)");
    if (start < 4 || start > data_end || size > data_end - start) {
        fail("the column chunk's bytes [{}, {}) lie outside the file's data [4, {})", start,
             start + size, data_end);
    }
    return {start, size};
}

std::vector<PageSummary> ParquetFile::page_headers(size_t row_group, size_t column) const {
    if (row_group >= metadata_.row_groups.size() || column >= metadata_.columns.size()) {
        fail("{}: no row group {} / column {}", name_, row_group, column);
    }
    std::vector<PageSummary> pages;
    try {
        const auto [start, size] = chunk_range(metadata_.row_groups[row_group].columns[column]);
        std::vector<uint8_t> chunk(size);
        source_->read(start, size, chunk.data());
        for (uint64_t pos = 0; pos < size;) {
            size_t header_size = 0;
            const PageHeader h = parse_page_header(chunk.data() + pos, size - pos, header_size);
            pages.push_back({h.type, h.encoding, h.num_values, h.compressed_page_size,
                             h.uncompressed_page_size});
            pos += header_size + static_cast<uint64_t>(h.compressed_page_size);
        }
    } catch (const Error& e) {
        fail("{}: row group {}, column '{}': {}", name_, row_group,
             printable(metadata_.columns[column].path), e.what());
    }
    return pages;
}

void ParquetFile::decode_chunk(size_t row_group, size_t column, ValueSink& sink,
                               DecodeScratch& scratch) const {
    const RowGroupMeta& group = metadata_.row_groups[row_group];
    const ColumnChunkMeta& meta = group.columns[column];
    const int max_def = metadata_.columns[column].max_definition_level;
    if (!codec_supported(meta.codec)) {
        fail("unsupported compression {} (supported: UNCOMPRESSED, SNAPPY, GZIP, ZSTD)",
             codec_name(meta.codec));
    }
    if (meta.num_values != group.num_rows) {
        fail("the column chunk has {} values but the row group has {} rows", meta.num_values,
             group.num_rows);
    }
    if (meta.num_values == 0) return;

    const auto [start, chunk_size] = chunk_range(meta);
    uint8_t* chunk = scratch.chunk.get(chunk_size);
    source_->read(start, chunk_size, chunk);

    uint64_t pos = 0, values_seen = 0;
    bool have_dictionary = false, seen_data_page = false;
    const auto total = static_cast<uint64_t>(meta.num_values);
    while (values_seen < total && !sink.full()) {
        if (pos >= chunk_size) {
            fail("the column chunk ends after {} of its {} values", values_seen, total);
        }
        const uint64_t page_offset = start + pos;
        try {
            size_t header_size = 0;
            const PageHeader h = parse_page_header(chunk + pos, chunk_size - pos, header_size);
            pos += header_size;
            const auto compressed = static_cast<uint64_t>(h.compressed_page_size);
            const auto uncompressed = static_cast<uint64_t>(h.uncompressed_page_size);
            if (compressed > chunk_size - pos) {
                fail("{} of {} bytes runs past the column chunk's end ({} bytes left)",
                     page_type_name(h.type), compressed, chunk_size - pos);
            }
            if (compressed > limits_.max_page_bytes || uncompressed > limits_.max_page_bytes) {
                fail(
                    "{} of {} bytes ({} uncompressed) is over the limit of {} "
                    "(ReaderLimits::max_page_bytes)",
                    page_type_name(h.type), compressed, uncompressed, limits_.max_page_bytes);
            }
            const uint8_t* body = chunk + pos;
            pos += compressed;

            auto inflate = [&](Buffer& buf, const uint8_t* src, uint64_t src_size,
                               uint64_t dst_size) -> const uint8_t* {
                if (meta.codec == Codec::Uncompressed) {
                    scratch.decompressor.check_size(meta.codec, src, src_size, dst_size);
                    return src;
                }
                scratch.decompressor.check_size(meta.codec, src, src_size, dst_size);
                uint8_t* dst = buf.get(dst_size);
                scratch.decompressor.decompress(meta.codec, src, src_size, dst, dst_size);
                return dst;
            };

            switch (h.type) {
                case PageType::DictionaryPage: {
                    if (have_dictionary || seen_data_page) {
                        fail("unexpected dictionary page (only one, before the data pages)");
                    }
                    if (h.encoding != Encoding::Plain && h.encoding != Encoding::PlainDictionary) {
                        fail("dictionary page in unsupported encoding {}",
                             encoding_name(h.encoding));
                    }
                    const uint8_t* data =
                        inflate(scratch.dictionary_page, body, compressed, uncompressed);
                    decode_plain_dictionary(data, uncompressed, static_cast<uint32_t>(h.num_values),
                                            scratch.dictionary);
                    have_dictionary = true;
                    break;
                }
                case PageType::DataPage:
                case PageType::DataPageV2: {
                    seen_data_page = true;
                    const auto n = static_cast<uint64_t>(h.num_values);
                    if (n > total - values_seen) {
                        fail("pages hold more values than the column chunk's {}", total);
                    }
                    const uint8_t* levels = nullptr;
                    uint64_t levels_size = 0;
                    const uint8_t* values = nullptr;
                    uint64_t values_size = 0;
                    if (h.type == PageType::DataPage) {
                        const uint8_t* data = inflate(scratch.page, body, compressed, uncompressed);
                        values = data;
                        values_size = uncompressed;
                        if (max_def > 0) {
                            if (h.definition_level_encoding != Encoding::Rle) {
                                fail("definition levels in unsupported encoding {}",
                                     encoding_name(h.definition_level_encoding));
                            }
                            if (values_size < 4) fail("definition levels length is missing");
                            levels_size = load_u32(values);
                            if (levels_size > values_size - 4) {
                                fail("definition levels of {} bytes run past the page ({} bytes)",
                                     levels_size, values_size);
                            }
                            levels = values + 4;
                            values += 4 + levels_size;
                            values_size -= 4 + levels_size;
                        }
                    } else {
                        const auto rep = static_cast<uint64_t>(h.repetition_levels_byte_length);
                        const auto def = static_cast<uint64_t>(h.definition_levels_byte_length);
                        if (rep + def > compressed || rep + def > uncompressed) {
                            fail("levels of {} bytes run past the page ({} bytes)", rep + def,
                                 std::min(compressed, uncompressed));
                        }
                        levels = body + rep;
                        levels_size = def;
                        const uint8_t* src = body + rep + def;
                        const uint64_t src_size = compressed - rep - def;
                        values_size = uncompressed - rep - def;
                        if (h.is_compressed) {
                            values = inflate(scratch.page, src, src_size, values_size);
                        } else {
                            if (src_size != values_size) {
                                fail("uncompressed values hold {} bytes but the header says {}",
                                     src_size, values_size);
                            }
                            values = src;
                        }
                    }
                    ValueDecoder decoder(h.encoding, values, values_size,
                                         have_dictionary ? &scratch.dictionary : nullptr);
                    decode_page_values(static_cast<uint32_t>(n), max_def, levels, levels_size,
                                       decoder, sink);
                    values_seen += n;
                    break;
                }
                default:
                    break;  // index pages and page types from the future carry no values
            }
        } catch (const Error& e) {
            fail("page at offset {}: {}", page_offset, e.what());
        }
    }
}

// ---- TextColumnReader ----

TextColumnReader::TextColumnReader(std::vector<std::string> paths, TextReaderOptions options)
    : scratch_(make_decode_scratch()) {
    files_.reserve(paths.size());
    for (const auto& path : paths) {
        files_.push_back(ParquetFile::open(path, options.limits));
        const size_t column = files_.back().column_index(options.column);
        files_.back().check_text_column(column);
        columns_.push_back(column);
        for (size_t g = 0; g < files_.back().num_row_groups(); ++g) {
            tasks_.push_back({files_.size() - 1, g});
        }
    }
    size_t threads = options.threads > 0 ? static_cast<size_t>(options.threads)
                                         : std::max(1u, std::thread::hardware_concurrency());
    threads = std::min(threads, tasks_.size());
    if (threads > 1) {
        slots_.resize(threads + 1);
        for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { worker(); });
    }
}

TextColumnReader::~TextColumnReader() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& w : workers_) w.join();
}

void TextColumnReader::decode(size_t task, TextBatch& out, DecodeScratch& scratch) const {
    const Task& t = tasks_[task];
    files_[t.file].read_text(t.row_group, columns_[t.file], out, &scratch);
}

void TextColumnReader::worker() {
    auto scratch = make_decode_scratch();
    for (;;) {
        size_t task;
        {
            std::unique_lock<std::mutex> lock(mutex_);
            work_cv_.wait(lock, [&] {
                return stop_ || next_task_ >= tasks_.size() ||
                       next_task_ < delivered_ + slots_.size();
            });
            if (stop_ || next_task_ >= tasks_.size()) return;
            task = next_task_++;
        }
        // The slot is ours: its previous task was delivered, and the consumer waits on `ready`.
        Slot& slot = slots_[task % slots_.size()];
        std::exception_ptr error;
        try {
            decode(task, slot.batch, *scratch);
        } catch (...) {
            error = std::current_exception();
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            slot.error = error;
            slot.ready = true;
        }
        ready_cv_.notify_all();
    }
}

bool TextColumnReader::next(TextBatch& batch) {
    if (failed_) fail("the parquet reader already failed; create a new one");
    if (delivered_ >= tasks_.size()) return false;
    if (workers_.empty()) {
        try {
            decode(delivered_, batch, *scratch_);
        } catch (...) {
            failed_ = true;
            throw;
        }
        ++delivered_;
        return true;
    }
    std::exception_ptr error;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        Slot& slot = slots_[delivered_ % slots_.size()];
        ready_cv_.wait(lock, [&] { return slot.ready; });
        std::swap(batch, slot.batch);
        error = slot.error;
        slot.error = nullptr;
        slot.ready = false;
        ++delivered_;
        if (error) stop_ = true;
    }
    work_cv_.notify_all();
    if (error) {
        failed_ = true;
        std::rethrow_exception(error);
    }
    return true;
}

const std::string& TextColumnReader::batch_file() const {
    if (delivered_ == 0) fail("no batch has been read yet");
    return files_[tasks_[delivered_ - 1].file].name();
}

size_t TextColumnReader::batch_row_group() const {
    if (delivered_ == 0) fail("no batch has been read yet");
    return tasks_[delivered_ - 1].row_group;
}

}  // namespace agpt::parquet
