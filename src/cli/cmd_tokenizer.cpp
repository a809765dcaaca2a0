// agpt tokenizer train|encode|decode: byte-level BPE tokenizers (src/data/bpe_tokenizer.h).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "data/bpe_bench.h"
#include "data/bpe_tokenizer.h"

namespace agpt::cli {

namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= s.size()) {
        const std::size_t comma = std::min(s.find(',', pos), s.size());
        if (comma > pos) out.push_back(s.substr(pos, comma - pos));
        pos = comma + 1;
    }
    return out;
}

// "<|endoftext|>=100257" or "<|endoftext|>" (the next free id).
std::vector<BpeSpecialToken> parse_special_ids(const std::string& s) {
    std::vector<BpeSpecialToken> out;
    for (const std::string& item : split_commas(s)) {
        const auto eq = item.rfind('=');
        if (eq == std::string::npos || eq == 0) {
            out.push_back({item, -1});
            continue;
        }
        int id = -1;
        try {
            std::size_t used = 0;
            id = std::stoi(item.substr(eq + 1), &used);
            if (used != item.size() - eq - 1) id = -1;
        } catch (const std::exception&) {
        }
        if (id < 0) fail("--special '{}': expected TEXT or TEXT=ID with ID >= 0", item);
        out.push_back({item.substr(0, eq), id});
    }
    return out;
}

// A bar that redraws in place on a terminal and prints a few lines into a log otherwise.
class ProgressBar {
  public:
    ProgressBar() : tty_(::isatty(STDERR_FILENO) != 0) {}

    void update(const BpeTrainProgress& p) {
        const char* phase = p.phase == BpeTrainProgress::Phase::counting ? "counting" : "merging ";
        const double frac = p.total > 0 ? static_cast<double>(p.done) / double(p.total) : 1.0;
        const auto now = std::chrono::steady_clock::now();
        const bool finished = p.done >= p.total;
        if (tty_) {
            if (!finished && now - last_ < std::chrono::milliseconds(100)) return;
            last_ = now;
            constexpr int kWidth = 30;
            const int filled = static_cast<int>(frac * kWidth);
            std::string bar(static_cast<std::size_t>(filled), '#');
            bar.resize(kWidth, '-');
            std::fprintf(stderr, "\r%s [%s] %3d%% %s", phase, bar.c_str(),
                         static_cast<int>(frac * 100), amount(p).c_str());
            if (finished) std::fputc('\n', stderr);
        } else {
            const int quarter = finished ? 4 : static_cast<int>(frac * 4);
            if (p.phase == phase_ && quarter <= quarter_) return;
            phase_ = p.phase;
            quarter_ = quarter;
            std::fprintf(stderr, "%s %3d%% %s\n", phase, static_cast<int>(frac * 100),
                         amount(p).c_str());
        }
        std::fflush(stderr);
    }

  private:
    static std::string amount(const BpeTrainProgress& p) {
        if (p.phase == BpeTrainProgress::Phase::counting)
            return fmt::format("{:.1f}/{:.1f} MB", double(p.done) / 1e6, double(p.total) / 1e6);
        return fmt::format("{}/{} merges", p.done, p.total);
    }

    bool tty_;
    std::chrono::steady_clock::time_point last_{};
    BpeTrainProgress::Phase phase_ = BpeTrainProgress::Phase::counting;
    int quarter_ = -1;
};

// What encode and decode read: --tokenizer FILE, or the tokenizer.json of a run folder.
struct TokenizerSource {
    std::string file;
    std::string run;
    std::string pattern = "gpt4";
    std::string specials;

    void add_options(CLI::App* sub) {
        sub->add_option("--tokenizer", file, "tokenizer.json or tiktoken ranks file");
        sub->add_option("--run", run, "Run folder holding tokenizer.json");
        sub->add_option("--pattern", pattern,
                        "Pre-tokenizer of a tiktoken file: gpt2, gpt4, gpt4-tiktoken")
            ->capture_default_str();
        sub->add_option("--special", specials,
                        "Special tokens of a tiktoken file: TEXT[=ID],... (ID: next free)");
    }

    BpeTokenizer load() const {
        if (file.empty() == run.empty())
            fail("tokenizer: give exactly one of --tokenizer and --run");
        std::string path = file;
        if (!run.empty()) {
            path = (fs::path(run) / "tokenizer.json").string();
            if (!fs::is_regular_file(path)) fail("{}: no tokenizer.json in this run folder", run);
        }
        BpeTiktokenOptions opt;
        opt.pattern = pretoken_pattern_from_name(pattern);
        opt.specials = parse_special_ids(specials);
        return BpeTokenizer::load(path, opt);
    }
};

void add_train(CLI::App* parent, Action& action) {
    struct Options {
        int vocab_size = 8192;
        std::string out;
        std::string pattern = "gpt4";
        std::string specials = "<|bos|>,<|eos|>";
        bool force = false;
        std::vector<std::string> files;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = parent->add_subcommand("train", "Train a byte-level BPE on text files");
    sub->add_option("--vocab-size", opt->vocab_size,
                    "Tokens in all: 256 bytes + merges + special tokens")
        ->capture_default_str();
    sub->add_option("--out", opt->out, "tokenizer.json to write")->required();
    sub->add_option("--pattern", opt->pattern, "Pre-tokenizer: gpt2, gpt4, gpt4-tiktoken")
        ->capture_default_str();
    sub->add_option("--special", opt->specials, "Special tokens, comma-separated")
        ->capture_default_str();
    sub->add_flag("--force", opt->force, "Overwrite an existing --out");
    sub->add_option("files", opt->files, "Text files to train on")->required();
    sub->callback([opt, &action] {
        action = [opt] {
            if (fs::exists(opt->out) && !opt->force)
                fail("{}: already exists; pass --force to overwrite it", opt->out);
            BpeTrainOptions train;
            train.vocab_size = opt->vocab_size;
            train.pattern = pretoken_pattern_from_name(opt->pattern);
            train.specials = split_commas(opt->specials);
            ProgressBar bar;
            train.progress = [&bar](const BpeTrainProgress& p) { bar.update(p); };
            const auto t0 = std::chrono::steady_clock::now();
            const BpeTokenizer tok = BpeTokenizer::train_files(opt->files, train);
            const double secs =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            tok.save_hf_json(opt->out);
            std::fprintf(stderr, "tokenizer: %d tokens (%zu merges, %zu special) in %.2f s -> %s\n",
                         tok.vocab_size(), tok.merge_count(), tok.specials().size(), secs,
                         opt->out.c_str());
            if (tok.vocab_size() < opt->vocab_size)
                std::fprintf(stderr,
                             "tokenizer: stopped at %d of %d tokens: every word of the text is "
                             "one token, no pair is left to merge\n",
                             tok.vocab_size(), opt->vocab_size);
            return 0;
        };
    });
}

void add_encode(CLI::App* parent, Action& action) {
    auto src = std::make_shared<TokenizerSource>();
    auto with_specials = std::make_shared<bool>(false);
    auto* sub = parent->add_subcommand("encode", "Text on stdin -> space-separated ids on stdout");
    src->add_options(sub);
    sub->add_flag("--specials", *with_specials,
                  "Encode special-token texts in the input as their ids");
    sub->callback([src, with_specials, &action] {
        action = [src, with_specials] {
            const BpeTokenizer tok = src->load();
            bool first = true;
            std::string line;
            tok.encode_stream(
                std::cin,
                [&](std::span<const int32_t> ids) {
                    line.clear();
                    for (const int32_t id : ids) {
                        if (!first) line.push_back(' ');
                        first = false;
                        line += std::to_string(id);
                    }
                    std::fwrite(line.data(), 1, line.size(), stdout);
                },
                *with_specials);
            std::fputc('\n', stdout);
            if (std::fflush(stdout) != 0) fail("tokenizer encode: write error on stdout");
            return 0;
        };
    });
}

void add_decode(CLI::App* parent, Action& action) {
    auto src = std::make_shared<TokenizerSource>();
    auto skip_specials = std::make_shared<bool>(false);
    auto* sub = parent->add_subcommand("decode", "Space-separated ids on stdin -> text on stdout");
    src->add_options(sub);
    sub->add_flag("--skip-specials", *skip_specials, "Leave special tokens out of the text");
    sub->callback([src, skip_specials, &action] {
        action = [src, skip_specials] {
            const BpeTokenizer tok = src->load();
            tok.decode_stream(std::cin, std::cout, "stdin", *skip_specials);
            return 0;
        };
    });
}

void add_convert(CLI::App* parent, Action& action) {
    auto src = std::make_shared<TokenizerSource>();
    auto out = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    auto* sub = parent->add_subcommand(
        "convert",
        "Write a tokenizer (e.g. a tiktoken ranks file) as a Hugging Face tokenizer.json");
    src->add_options(sub);
    sub->add_option("--out", *out, "tokenizer.json to write")->required();
    sub->add_flag("--force", *force, "Overwrite an existing --out");
    sub->callback([src, out, force, &action] {
        action = [src, out, force] {
            if (fs::exists(*out) && !*force)
                fail("{}: already exists; pass --force to overwrite it", *out);
            src->load().save_hf_json(*out);
            return 0;
        };
    });
}

void add_bench(CLI::App* parent, Action& action) {
    auto src = std::make_shared<TokenizerSource>();
    auto file = std::make_shared<std::string>();
    auto repeats = std::make_shared<int>(3);
    auto* sub = parent->add_subcommand("bench", "Encode/decode throughput on one thread");
    src->add_options(sub);
    sub->add_option("--repeat", *repeats, "Timed passes after the cold one")->capture_default_str();
    sub->add_option("file", *file, "Text to encode")->required();
    sub->callback([src, file, repeats, &action] {
        action = [src, file, repeats] {
            const BpeTokenizer tok = src->load();
            std::ifstream in(*file, std::ios::binary);
            if (!in) fail("{}: cannot open file", *file);
            std::ostringstream ss;
            ss << in.rdbuf();
            const std::string text = ss.str();
            const BpeThroughput r = bpe_measure_throughput(tok, text, *repeats);
            std::printf(
                "vocab %d | %.2f MB -> %zu tokens (%.2f bytes/token) | encode %.1f MB/s cold, "
                "%.1f MB/s warm | decode %.1f MB/s\n",
                tok.vocab_size(), double(r.bytes) / 1e6, r.tokens,
                r.tokens ? double(r.bytes) / double(r.tokens) : 0.0, r.encode_cold_mb_s,
                r.encode_warm_mb_s, r.decode_mb_s);
            return 0;
        };
    });
}

}  // namespace

void add_tokenizer_command(CLI::App& app, Action& action) {
    auto* sub = app.add_subcommand("tokenizer", "Train, encode, decode, convert byte-level BPE");
    sub->require_subcommand(1);
    add_train(sub, action);
    add_encode(sub, action);
    add_decode(sub, action);
    add_convert(sub, action);
    add_bench(sub, action);
}

}  // namespace agpt::cli
