#include "data/prepare.h"

#include <glob.h>
#include <omp.h>
#include <zlib.h>
#include <zstd.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/timer.h"
#include "data/parquet/parquet_reader.h"
#include "data/pretokenize.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"

namespace agpt {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_input_file(const fs::path& p, const std::string& format) {
    const std::string f = document_format_of(p.string());
    return format.empty() ? !f.empty() : f == format;
}

void check_format(const std::string& format) {
    if (!format.empty() && format != "txt" && format != "jsonl" && format != "jsonl.zst" &&
        format != "parquet")
        fail("format '{}': expected txt, jsonl, jsonl.zst or parquet", format);
}

// Appends the file's bytes to `out`, read straight into place (no intermediate copies: text
// files are read on the one thread that feeds the workers).
void append_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open file", path);
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) fail("{}: cannot read file size ({})", path, ec.message());
    const std::size_t at = out.size();
    out.resize(at + size);
    in.read(out.data() + at, static_cast<std::streamsize>(size));
    if (static_cast<uintmax_t>(in.gcount()) != size) {
        out.resize(at);
        fail("{}: read error (the file changed while being read?)", path);
    }
}

std::string read_all(const std::string& path) {
    std::string s;
    append_file(path, s);
    return s;
}

std::string zstd_decompress(const std::string& path, const std::string& compressed) {
    std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    std::string out;
    std::vector<char> buf(ZSTD_DStreamOutSize());
    ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
    size_t last = 0;
    while (in.pos < in.size) {
        ZSTD_outBuffer o{buf.data(), buf.size(), 0};
        last = ZSTD_decompressStream(ctx.get(), &o, &in);
        if (ZSTD_isError(last)) fail("{}: zstd: {}", path, ZSTD_getErrorName(last));
        out.append(buf.data(), o.pos);
    }
    if (last != 0) fail("{}: zstd stream is truncated", path);
    return out;
}

// The documents of one JSON-lines or parquet file, in order, handed over in batches (text files
// are read by tokenize_documents).
void read_documents(const std::string& path, const std::string& format, const std::string& field,
                    int workers, const std::function<void(parquet::TextBatch&)>& consume) {
    parquet::TextBatch batch;
    if (format == "parquet") {
        parquet::TextReaderOptions o;
        o.column = field;
        o.threads = workers;
        parquet::TextColumnReader reader({path}, o);
        while (reader.next(batch)) consume(batch);
        return;
    }
    std::string text = read_all(path);
    if (format == "jsonl.zst") text = zstd_decompress(path, text);
    // Lines are parsed in parallel, a batch at a time; documents keep the file's order and the
    // first bad line (in file order) is the one reported.
    constexpr std::size_t kBatchLines = 4096;
    std::vector<std::string_view> lines;
    std::vector<std::size_t> line_numbers;
    std::vector<std::string> texts(kBatchLines), errors(kBatchLines);
    std::vector<char> present(kBatchLines);
    auto flush = [&] {
        const long n = static_cast<long>(lines.size());
#pragma omp parallel for schedule(dynamic, 64) num_threads(workers)
        for (long i = 0; i < n; i++) {
            errors[i].clear();
            present[i] = 0;
            try {
                const json obj = json::parse(lines[i]);
                if (!obj.is_object() || !obj.contains(field)) {
                    errors[i] = fmt::format("no '{}' field", field);
                } else if (!obj[field].is_null()) {
                    if (!obj[field].is_string())
                        errors[i] = fmt::format("'{}' is not a string", field);
                    else {
                        texts[i] = obj[field].get<std::string>();
                        present[i] = 1;
                    }
                }
            } catch (const json::exception& e) {
                errors[i] = fmt::format("not a JSON object ({})", e.what());
            }
        }
        for (long i = 0; i < n; i++) {
            if (!errors[i].empty()) fail("{}:{}: {}", path, line_numbers[i], errors[i]);
            if (!present[i]) continue;
            batch.text += texts[i];
            batch.ends.push_back(batch.text.size());
        }
        if (batch.size() > 0) consume(batch);
        batch.clear();
        lines.clear();
        line_numbers.clear();
    };
    std::size_t pos = 0, line_no = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        line_no++;
        const std::string_view line(text.data() + pos, end - pos);
        pos = end + 1;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        lines.push_back(line);
        line_numbers.push_back(line_no);
        if (lines.size() == kBatchLines) flush();
    }
    flush();
}

class ShardSink {
  public:
    ShardSink(fs::path dir, std::string prefix, uint64_t shard_tokens, uint32_t max_id)
        : dir_(std::move(dir)),
          prefix_(std::move(prefix)),
          shard_tokens_(shard_tokens),
          max_id_(max_id) {}
    void add(const std::vector<int32_t>& ids) {
        for (int32_t id : ids) {
            buf_.push_back(static_cast<uint32_t>(id));
            if (buf_.size() == shard_tokens_) flush();
        }
        total_ += ids.size();
    }
    void flush() {
        if (buf_.empty()) return;
        const std::string name = fmt::format("{}_{:06}.bin", prefix_, shards_.size());
        write_token_shard((dir_ / name).string(), buf_, max_id_);
        shards_.push_back({{"file", name}, {"tokens", buf_.size()}});
        buf_.clear();
    }
    uint64_t total() const { return total_; }
    const json& shards() const { return shards_; }

  private:
    fs::path dir_;
    std::string prefix_;
    uint64_t shard_tokens_;
    uint32_t max_id_;
    std::vector<uint32_t> buf_;
    json shards_ = json::array();
    uint64_t total_ = 0;
};

}  // namespace

std::string document_format_of(const std::string& path) {
    for (const char* f : {"txt", "jsonl", "jsonl.zst", "parquet"})
        if (ends_with(path, std::string(".") + f)) return f;
    return "";
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs,
                                       const std::string& format) {
    check_format(format);
    std::vector<std::string> files;
    for (const auto& in : inputs) {
        if (fs::is_directory(in)) {
            std::vector<std::string> found;
            for (const auto& e : fs::recursive_directory_iterator(in))
                if (e.is_regular_file() && is_input_file(e.path(), format))
                    found.push_back(e.path().string());
            std::sort(found.begin(), found.end());
            if (found.empty()) {
                if (!format.empty()) fail("{}: no .{} files in this folder", in, format);
                fail("{}: no .txt, .jsonl, .jsonl.zst or .parquet files", in);
            }
            files.insert(files.end(), found.begin(), found.end());
        } else if (fs::is_regular_file(in)) {
            files.push_back(in);
        } else {
            glob_t g{};
            const int rc = ::glob(in.c_str(), 0, nullptr, &g);
            std::vector<std::string> found;
            if (rc == 0)
                for (std::size_t i = 0; i < g.gl_pathc; i++) found.emplace_back(g.gl_pathv[i]);
            globfree(&g);
            if (found.empty()) fail("{}: no such file, and no file matches it as a pattern", in);
            std::sort(found.begin(), found.end());
            files.insert(files.end(), found.begin(), found.end());
        }
    }
    if (format.empty())
        for (const auto& f : files)
            if (!is_input_file(f, format))
                fail("{}: unsupported input (expected .txt, .jsonl, .jsonl.zst or .parquet)", f);
    return files;
}

namespace {

// Every k-th document (the k-th, 2k-th, ...) is held out: spread over the whole input,
// independent of batching, and a single document stays in training.
uint64_t val_every_of(double val_fraction) {
    if (!(val_fraction >= 0 && val_fraction < 1))
        fail("--val-fraction {}: must be in [0, 1)", val_fraction);
    return val_fraction > 0 ? static_cast<uint64_t>(std::llround(1.0 / val_fraction)) : 0;
}

// Encodes each document of the batch into ids[i] (its tokens, then EOS) on `workers` threads.
// Documents over 2 MiB are encoded in pieces of 1-2 MiB, cut where pre-tokenization is
// unaffected (pretoken_safe_cut), so one large text file also uses every worker; the ids are
// those of encoding it whole.
void encode_batch(const parquet::TextBatch& batch, const Tokenizer& tok, int32_t eos,
                  bool chunkable, int workers, std::vector<std::vector<int32_t>>& ids) {
    constexpr std::size_t kPiece = std::size_t{1} << 20;
    struct Piece {
        std::size_t doc;
        std::string_view text;
    };
    std::vector<Piece> pieces;
    for (std::size_t i = 0; i < batch.size(); i++) {
        std::string_view text = batch[i];
        while (chunkable && text.size() > 2 * kPiece) {
            const std::size_t cut = pretoken_safe_cut(text.substr(0, 2 * kPiece), kPiece);
            if (cut == 0) break;  // no safe cut nearby: the rest stays one piece
            pieces.push_back({i, text.substr(0, cut)});
            text.remove_prefix(cut);
        }
        pieces.push_back({i, text});
    }
    std::vector<std::vector<int32_t>> piece_ids(pieces.size());
    const long n = static_cast<long>(pieces.size());
#pragma omp parallel for schedule(dynamic, 4) num_threads(workers)
    for (long p = 0; p < n; p++) piece_ids[p] = tok.encode(pieces[p].text);
    ids.assign(batch.size(), {});
    for (std::size_t p = 0; p < pieces.size(); p++) {
        auto& into = ids[pieces[p].doc];
        if (into.empty())
            into = std::move(piece_ids[p]);
        else
            into.insert(into.end(), piece_ids[p].begin(), piece_ids[p].end());
    }
    for (auto& doc : ids) doc.push_back(eos);
}

// Reads the files' documents in order, tokenizes them in parallel (ids + EOS) and hands each
// document's ids to `sink` in input order, with whether it is held out. Fills the counts in
// `sum` (not the token totals) and one `sources` entry per file read.
void tokenize_documents(const std::vector<std::string>& files, const PrepareOptions& opt,
                        const Tokenizer& tok, int32_t eos, uint64_t val_every,
                        const std::function<void(const std::vector<int32_t>&, bool)>& sink,
                        PrepareSummary& sum, json& sources) {
    const int workers = opt.workers > 0 ? opt.workers : omp_get_num_procs();
    PrepareProgress prog;
    for (const auto& f : files) prog.bytes_total += fs::file_size(f);
    Timer timer;
    std::vector<std::vector<int32_t>> ids;
    // Cutting a document changes nothing unless the tokenizer adds a space at the start.
    const bool chunkable = tok.decode(tok.encode("a")) == "a";
    auto format_of = [&](const std::string& f) {
        return opt.format.empty() ? document_format_of(f) : opt.format;
    };
    // Encodes a batch, hands its documents to the sink in order; returns their number.
    auto handle = [&](const parquet::TextBatch& batch) {
        const long n = static_cast<long>(batch.size());
        encode_batch(batch, tok, eos, chunkable, workers, ids);
        for (long i = 0; i < n; i++) {
            const bool held_out = val_every > 0 && sum.documents % val_every == val_every - 1;
            sink(ids[i], held_out);
            sum.documents++;
            prog.tokens += ids[i].size();
        }
        sum.text_bytes += batch.text.size();
        prog.text_bytes = sum.text_bytes;
        prog.documents = sum.documents;
        prog.seconds = timer.seconds();
        if (opt.progress) opt.progress(prog);
        return static_cast<uint64_t>(n);
    };
    constexpr std::size_t kTextGroupBytes = std::size_t{16} << 20;
    for (std::size_t fi = 0; fi < files.size();) {
        const std::string& f = files[fi];
        if (format_of(f) == "txt") {
            // Consecutive text files (one document each) are encoded together, up to 16 MiB,
            // so that a folder of small files keeps every worker busy.
            parquet::TextBatch batch;
            std::vector<std::size_t> read;
            for (; fi < files.size() && format_of(files[fi]) == "txt" &&
                   batch.text.size() < kTextGroupBytes;
                 fi++) {
                try {
                    append_file(files[fi], batch.text);
                } catch (const Error& e) {
                    if (!opt.skip_bad_files) throw;
                    sum.skipped.push_back(e.what());
                    continue;
                }
                batch.ends.push_back(batch.text.size());
                read.push_back(fi);
            }
            if (!read.empty()) handle(batch);
            for (std::size_t i : read) {
                prog.bytes_done += fs::file_size(files[i]);
                sources.push_back(
                    {{"path", files[i]}, {"bytes", fs::file_size(files[i])}, {"documents", 1}});
            }
            continue;
        }
        uint64_t docs_in_file = 0;
        try {
            read_documents(f, format_of(f), opt.text_field, workers,
                           [&](parquet::TextBatch& batch) { docs_in_file += handle(batch); });
        } catch (const Error& e) {
            if (!opt.skip_bad_files || docs_in_file > 0) throw;
            sum.skipped.push_back(e.what());
            fi++;
            continue;
        }
        prog.bytes_done += fs::file_size(f);
        sources.push_back({{"path", f}, {"bytes", fs::file_size(f)}, {"documents", docs_in_file}});
        fi++;
    }
}

}  // namespace

PrepareSummary prepare_dataset(const PrepareOptions& opt) {
    if (opt.out.empty()) fail("--out: an output folder is needed");
    if (fs::exists(opt.out)) fail("{}: already exists; choose another --out", opt.out);
    const uint64_t val_every = val_every_of(opt.val_fraction);
    if (opt.shard_tokens == 0) fail("--shard-tokens: must be positive");
    const std::vector<std::string> files = expand_inputs(opt.inputs, opt.format);
    const Tokenizer tok = Tokenizer::load(opt.tokenizer);
    const auto eos = tok.eos_id();
    if (!eos) fail("{}: the tokenizer has no <|eos|> token to end documents with", opt.tokenizer);

    const fs::path tmp = opt.out + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    const auto max_id = static_cast<uint32_t>(tok.vocab_size() - 1);
    ShardSink train(tmp, "train", opt.shard_tokens, max_id),
        val(tmp, "val", opt.shard_tokens, max_id);

    PrepareSummary sum;
    Timer timer;
    json sources = json::array();
    try {
        tokenize_documents(
            files, opt, tok, *eos, val_every,
            [&](const std::vector<int32_t>& ids, bool held_out) {
                (held_out ? val : train).add(ids);
            },
            sum, sources);
    } catch (...) {
        fs::remove_all(tmp);
        throw;
    }
    train.flush();
    val.flush();
    sum.train_tokens = train.total();
    sum.val_tokens = val.total();
    sum.train_shards = static_cast<int>(train.shards().size());
    sum.val_shards = static_cast<int>(val.shards().size());
    if (sum.train_tokens == 0) {
        fs::remove_all(tmp);
        fail("data prepare: the inputs hold no documents");
    }
    const std::string tok_bytes = opt.tokenizer == "byte" ? "byte" : read_all(opt.tokenizer);
    const json manifest = {
        {"format", "agpt-token-shards"},
        {"version", 1},
        {"tokenizer", opt.tokenizer},
        {"tokenizer_crc32", crc32(0L, reinterpret_cast<const Bytef*>(tok_bytes.data()),
                                  static_cast<uInt>(tok_bytes.size()))},
        {"vocab_size", tok.vocab_size()},
        {"eos_id", *eos},
        {"text_field", opt.text_field},
        {"val_every", val_every},
        {"documents", sum.documents},
        {"text_bytes", sum.text_bytes},
        {"train_tokens", sum.train_tokens},
        {"val_tokens", sum.val_tokens},
        {"train_shards", train.shards()},
        {"val_shards", val.shards()},
        {"sources", sources},
        {"skipped", sum.skipped}};
    {
        std::ofstream out(tmp / "manifest.json");
        out << manifest.dump(2) << "\n";
        if (!out.flush()) fail("{}: write failed", (tmp / "manifest.json").string());
    }
    fs::rename(tmp, opt.out);
    sum.seconds = timer.seconds();
    return sum;
}

PreparedTokens prepare_in_memory(const PrepareOptions& opt, const Tokenizer& tok) {
    if (opt.inputs.empty()) fail("data: no inputs to read");
    const uint64_t val_every = val_every_of(opt.val_fraction);
    const std::vector<std::string> files = expand_inputs(opt.inputs, opt.format);
    const auto eos = tok.eos_id();
    if (!eos) fail("the tokenizer has no <|eos|> token to end documents with");
    PreparedTokens out;
    Timer timer;
    json sources = json::array();
    tokenize_documents(
        files, opt, tok, *eos, val_every,
        [&](const std::vector<int32_t>& ids, bool held_out) {
            auto& into = held_out ? out.val : out.train;
            into.insert(into.end(), ids.begin(), ids.end());
        },
        out.summary, sources);
    out.summary.train_tokens = out.train.size();
    out.summary.val_tokens = out.val.size();
    if (out.summary.train_tokens == 0)
        fail("{}: the inputs hold no documents", fmt::join(opt.inputs, ", "));
    out.summary.seconds = timer.seconds();
    return out;
}

}  // namespace agpt
