#include <algorithm>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "data/parquet/parquet_inspect.h"
#include "data/prepare.h"

namespace agpt::cli {

void add_data_command(CLI::App& app, Action& action) {
    struct Options {
        std::string file;
        std::string column = "text";
        size_t rows = 5;
        size_t row_groups = 10;
    };
    auto opt = std::make_shared<Options>();
    auto* data = app.add_subcommand("data", "Look at and prepare training data");
    data->require_subcommand(1);

    auto* inspect = data->add_subcommand(
        "inspect",
        "Print a parquet file's schema, row groups, codecs and encodings, and first rows");
    inspect->add_option("FILE", opt->file, "Parquet file")->required();
    inspect->add_option("--column", opt->column, "String column whose first rows are shown")
        ->capture_default_str();
    inspect->add_option("--rows", opt->rows, "Rows to show (0: none)")->capture_default_str();
    inspect->add_option("--row-groups", opt->row_groups, "Row groups to list")
        ->capture_default_str();
    inspect->callback([opt, &action] {
        action = [opt] {
            const auto file = parquet::ParquetFile::open(opt->file);
            std::fputs(parquet::describe_parquet(file, opt->row_groups).c_str(), stdout);
            if (opt->rows > 0) {
                std::fflush(stdout);
                const std::string rows = parquet::preview_column(file, opt->column, opt->rows);
                std::fputs(("\n" + rows).c_str(), stdout);
            }
            return 0;
        };
    });

    auto prep = std::make_shared<PrepareOptions>();
    auto* prepare = data->add_subcommand(
        "prepare", "Tokenize documents into llm.c token shards (+ manifest.json)");
    prepare->add_option("inputs", prep->inputs, "Files, folders or glob patterns")->required();
    prepare->add_option("--tokenizer", prep->tokenizer, "byte or a tokenizer file")
        ->capture_default_str();
    prepare->add_option("--out", prep->out, "Output folder (must not exist)")->required();
    prepare->add_option("--val-fraction", prep->val_fraction, "Share of documents held out")
        ->capture_default_str();
    prepare->add_option("--workers", prep->workers, "Tokenizing threads (0: all cores)");
    prepare->add_option("--text-field", prep->text_field, "JSON key / parquet column")
        ->capture_default_str();
    prepare->add_option("--shard-tokens", prep->shard_tokens, "Tokens per shard")
        ->capture_default_str();
    prepare->add_flag("--skip-bad-files", prep->skip_bad_files,
                      "List unreadable files and go on instead of stopping");
    prepare->callback([prep, &action] {
        action = [prep] {
            PrepareOptions o = *prep;
            o.progress = [](const PrepareProgress& p) {
                std::fprintf(
                    stderr, "\rprepare: %.1f%% | %llu documents | %llu tokens | %.1f MB/s",
                    p.bytes_total ? 100.0 * static_cast<double>(p.bytes_done) /
                                        static_cast<double>(p.bytes_total)
                                  : 0.0,
                    static_cast<unsigned long long>(p.documents),
                    static_cast<unsigned long long>(p.tokens),
                    p.seconds > 0 ? static_cast<double>(p.text_bytes) / 1e6 / p.seconds : 0.0);
            };
            const PrepareSummary s = prepare_dataset(o);
            std::fprintf(stderr, "\n");
            for (const auto& skipped : s.skipped)
                std::fprintf(stderr, "skipped %s\n", skipped.c_str());
            std::printf(
                "%s: %llu documents, %llu train + %llu val tokens in %d + %d shards, "
                "%.1f MB of text in %.1fs (%.1f MB/s)\n",
                o.out.c_str(), static_cast<unsigned long long>(s.documents),
                static_cast<unsigned long long>(s.train_tokens),
                static_cast<unsigned long long>(s.val_tokens), s.train_shards, s.val_shards,
                static_cast<double>(s.text_bytes) / 1e6, s.seconds,
                static_cast<double>(s.text_bytes) / 1e6 / std::max(s.seconds, 1e-9));
            return 0;
        };
    });
}

}  // namespace agpt::cli
