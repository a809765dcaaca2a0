#include <glob.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "data/dataset_registry.h"
#include "data/parquet/parquet_inspect.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

namespace agpt::cli {

namespace {

bool path_present(const std::string& path) {
    if (path.empty()) return false;
    if (std::filesystem::exists(path)) return true;
    glob_t g{};
    const bool found = ::glob(path.c_str(), 0, nullptr, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    return found;
}

// `agpt data list`: the registry file used and every name it knows, with format and path.
void print_datasets(const DatasetRegistry& reg) {
    if (reg.file.empty())
        std::printf(
            "no dataset registry file (pass --datasets FILE, set AGPT_DATASETS or create "
            "./datasets.toml): built-in names only\n");
    else
        std::printf("registry: %s (%s)\n", reg.file.c_str(),
                    reg.how == "given" ? "--datasets" : reg.how.c_str());
    std::size_t wn = 4, wf = 6, wt = 10;
    for (const auto& e : reg.entries) {
        wn = std::max(wn, e.name.size());
        wf = std::max(wf, e.format.size());
        wt = std::max(wt, e.format == "shards" ? 1 : e.text_field.size());
    }
    std::printf("%-*s  %-*s  %-*s  %s\n", static_cast<int>(wn), "name", static_cast<int>(wf),
                "format", static_cast<int>(wt), "text_field", "path");
    for (const auto& e : reg.entries) {
        std::string path = e.path.empty() ? "(bundled corpus not found; set AGPT_DATA_DIR)"
                                          : e.path + (path_present(e.path) ? "" : "  (missing)");
        if (!e.tokenizer.empty()) path += "  [tokenizer " + e.tokenizer + "]";
        std::printf("%-*s  %-*s  %-*s  %s\n", static_cast<int>(wn), e.name.c_str(),
                    static_cast<int>(wf), e.format.c_str(), static_cast<int>(wt),
                    e.format == "shards" ? "-" : e.text_field.c_str(), path.c_str());
    }
}

}  // namespace

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
    auto names = std::make_shared<std::pair<std::string, std::string>>();  // dataset, registry
    auto* prepare = data->add_subcommand(
        "prepare", "Tokenize documents into llm.c token shards (+ manifest.json)");
    prepare->add_option("inputs", prep->inputs, "Files, folders or glob patterns");
    auto* dataset_opt = prepare->add_option(
        "--dataset", names->first,
        "A dataset name (built-in or from the registry) or a file, folder or glob pattern");
    prepare
        ->add_option("--datasets", names->second,
                     "Dataset registry TOML file (default: $AGPT_DATASETS, else ./datasets.toml)")
        ->needs(dataset_opt);
    auto* tokenizer_opt =
        prepare->add_option("--tokenizer", prep->tokenizer, "byte or a tokenizer file")
            ->capture_default_str();
    prepare->add_option("--out", prep->out, "Output folder (must not exist)")->required();
    prepare->add_option("--val-fraction", prep->val_fraction, "Share of documents held out")
        ->capture_default_str();
    prepare->add_option("--workers", prep->workers, "Tokenizing threads (0: all cores)");
    auto* text_field_opt =
        prepare->add_option("--text-field", prep->text_field, "JSON key / parquet column")
            ->capture_default_str();
    auto* format_opt = prepare->add_option(
        "--format", prep->format,
        "Read every input as txt, jsonl, jsonl.zst or parquet (default: by file name)");
    prepare->add_option("--shard-tokens", prep->shard_tokens, "Tokens per shard")
        ->capture_default_str();
    prepare->add_flag("--skip-bad-files", prep->skip_bad_files,
                      "List unreadable files and go on instead of stopping");
    // A registry entry gives the inputs, format, text field and tokenizer; flags given win,
    // except a --tokenizer other than the entry's, which is refused.
    prepare->callback([prep, names, tokenizer_opt, text_field_opt, format_opt, &action] {
        PrepareOptions given = *prep;
        const std::string dataset = names->first, registry = names->second;
        const bool tokenizer_given = tokenizer_opt->count() > 0,
                   text_field_given = text_field_opt->count() > 0,
                   format_given = format_opt->count() > 0;
        action = [given, dataset, registry, tokenizer_given, text_field_given, format_given] {
            PrepareOptions o = given;
            if (!dataset.empty()) {
                if (!o.inputs.empty())
                    fail("data prepare: give input paths or --dataset, not both");
                const DatasetRegistry reg = load_dataset_registry(registry);
                const DatasetEntry e = resolve_dataset(dataset, reg, "--dataset");
                if (e.format == "shards")
                    fail("--dataset '{}': already token shards ({}); nothing to prepare", dataset,
                         e.path);
                o.inputs = {e.path};
                if (!e.is_path()) {
                    if (!format_given) o.format = e.format;
                    if (!text_field_given) o.text_field = e.text_field;
                    if (!e.tokenizer.empty()) {
                        if (tokenizer_given)
                            check_dataset_tokenizer(e, Tokenizer::load(o.tokenizer), "--dataset");
                        else
                            o.tokenizer = e.tokenizer;
                    }
                }
            } else if (o.inputs.empty()) {
                fail("data prepare: name the inputs (files, folders, globs) or --dataset NAME");
            }
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

    auto registry_file = std::make_shared<std::string>();
    auto* list = data->add_subcommand("list", "List the dataset names: built-in and registry");
    list->add_option("--datasets", *registry_file,
                     "Dataset registry TOML file (default: $AGPT_DATASETS, else ./datasets.toml)");
    list->callback([registry_file, &action] {
        action = [registry_file] {
            print_datasets(load_dataset_registry(*registry_file));
            return 0;
        };
    });
}

}  // namespace agpt::cli
