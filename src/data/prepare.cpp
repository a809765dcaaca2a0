#include "data/prepare.h"

#include <glob.h>
#include <omp.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/timer.h"
#include "data/parquet/parquet_reader.h"
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

bool is_input_file(const fs::path& p) {
    const std::string s = p.string();
    return ends_with(s, ".txt") || ends_with(s, ".jsonl") || ends_with(s, ".jsonl.zst") ||
           ends_with(s, ".parquet");
}

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open file", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
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

// The documents of one file, in order, handed over in batches.
void read_documents(const std::string& path, const std::string& field, int workers,
                    const std::function<void(parquet::TextBatch&)>& consume) {
    parquet::TextBatch batch;
    if (ends_with(path, ".parquet")) {
        parquet::TextReaderOptions o;
        o.column = field;
        o.threads = workers;
        parquet::TextColumnReader reader({path}, o);
        while (reader.next(batch)) consume(batch);
        return;
    }
    std::string text = read_all(path);
    if (ends_with(path, ".txt")) {
        batch.text = std::move(text);
        batch.ends.push_back(batch.text.size());
        consume(batch);
        return;
    }
    if (ends_with(path, ".zst")) text = zstd_decompress(path, text);
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

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
    std::vector<std::string> files;
    for (const auto& in : inputs) {
        if (fs::is_directory(in)) {
            std::vector<std::string> found;
            for (const auto& e : fs::recursive_directory_iterator(in))
                if (e.is_regular_file() && is_input_file(e.path()))
                    found.push_back(e.path().string());
            std::sort(found.begin(), found.end());
            if (found.empty()) fail("{}: no .txt, .jsonl, .jsonl.zst or .parquet files", in);
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
    for (const auto& f : files)
        if (!is_input_file(f))
            fail("{}: unsupported input (expected .txt, .jsonl, .jsonl.zst or .parquet)", f);
    return files;
}

PrepareSummary prepare_dataset(const PrepareOptions& opt) {
    if (opt.out.empty()) fail("--out: an output folder is needed");
    if (fs::exists(opt.out)) fail("{}: already exists; choose another --out", opt.out);
    if (!(opt.val_fraction >= 0 && opt.val_fraction < 1))
        fail("--val-fraction {}: must be in [0, 1)", opt.val_fraction);
    if (opt.shard_tokens == 0) fail("--shard-tokens: must be positive");
    const std::vector<std::string> files = expand_inputs(opt.inputs);
    const Tokenizer tok = Tokenizer::load(opt.tokenizer);
    const auto eos = tok.eos_id();
    if (!eos) fail("{}: the tokenizer has no <|eos|> token to end documents with", opt.tokenizer);
    const int workers = opt.workers > 0 ? opt.workers : omp_get_num_procs();
    // Every k-th document (the k-th, 2k-th, ...) is held out: spread over the whole input,
    // independent of batching, and a single document stays in training.
    const uint64_t val_every =
        opt.val_fraction > 0 ? static_cast<uint64_t>(std::llround(1.0 / opt.val_fraction)) : 0;

    const fs::path tmp = opt.out + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    const auto max_id = static_cast<uint32_t>(tok.vocab_size() - 1);
    ShardSink train(tmp, "train", opt.shard_tokens, max_id),
        val(tmp, "val", opt.shard_tokens, max_id);

    PrepareSummary sum;
    PrepareProgress prog;
    for (const auto& f : files) prog.bytes_total += fs::file_size(f);
    Timer timer;
    json sources = json::array();
    std::vector<std::vector<int32_t>> ids;
    for (const auto& f : files) {
        uint64_t docs_in_file = 0;
        try {
            read_documents(f, opt.text_field, workers, [&](parquet::TextBatch& batch) {
                const long n = static_cast<long>(batch.size());
                ids.assign(static_cast<std::size_t>(n), {});
#pragma omp parallel for schedule(dynamic, 16) num_threads(workers)
                for (long i = 0; i < n; i++) {
                    ids[i] = tok.encode(batch[static_cast<std::size_t>(i)]);
                    ids[i].push_back(*eos);
                }
                for (long i = 0; i < n; i++) {
                    const bool held_out =
                        val_every > 0 && sum.documents % val_every == val_every - 1;
                    (held_out ? val : train).add(ids[i]);
                    sum.documents++;
                    prog.tokens += ids[i].size();
                }
                docs_in_file += static_cast<uint64_t>(n);
                sum.text_bytes += batch.text.size();
                prog.text_bytes = sum.text_bytes;
                prog.documents = sum.documents;
                prog.seconds = timer.seconds();
                if (opt.progress) opt.progress(prog);
            });
        } catch (const Error& e) {
            if (!opt.skip_bad_files || docs_in_file > 0) {
                fs::remove_all(tmp);
                throw;
            }
            sum.skipped.push_back(e.what());
            continue;
        }
        prog.bytes_done += fs::file_size(f);
        sources.push_back({{"path", f}, {"bytes", fs::file_size(f)}, {"documents", docs_in_file}});
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

}  // namespace agpt
