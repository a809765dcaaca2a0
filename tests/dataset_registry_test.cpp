// The dataset registry (data/dataset_registry.h) and what training reads through it
// (open_training_data): built-in names, user entries of every format, relative paths, the
// tokenizer rule, and one clear error for unknown names and bad registry files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/dataset.h"
#include "data/dataset_registry.h"
#include "data/prepare.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "scoped_env.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

const std::string kParquetDir = std::string(AGPT_TEST_DATA_DIR) + "/parquet";
const std::string kBpe1024 = std::string(AGPT_TEST_DATA_DIR) + "/hf_bytelevel_bpe_1024.json";

fs::path fresh(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_registry_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

struct ScopedCwd {
    fs::path old = fs::current_path();
    explicit ScopedCwd(const fs::path& to) { fs::current_path(to); }
    ~ScopedCwd() { fs::current_path(old); }
};

// All the tokens of spans, in order.
std::vector<int32_t> tokens_of(const TokenSpans& spans) {
    std::vector<int32_t> all;
    for (std::size_t s = 0; s < spans.sizes.size(); s++) {
        std::vector<int32_t> part(spans.sizes[s]);
        spans.read(s, 0, part.size(), part.data());
        all.insert(all.end(), part.begin(), part.end());
    }
    return all;
}

// The tokens of a prepared folder's train_* or val_* shards, in order.
std::vector<int32_t> shard_tokens(const fs::path& dir, const std::string& prefix) {
    std::vector<int32_t> all;
    for (const auto& file : list_token_shards(dir.string())) {
        if (!fs::path(file).filename().string().starts_with(prefix)) continue;
        const TokenShard sh(file);
        for (std::size_t i = 0; i < sh.size(); i++) all.push_back(static_cast<int32_t>(sh.at(i)));
    }
    return all;
}

// A registry in <d>/reg/datasets.toml with one entry per format, paths relative to reg/.
fs::path make_registry(const fs::path& d) {
    const fs::path reg = d / "reg";
    write(reg / "corpus" / "one.txt", "a single text file is a single document\n");
    std::string jsonl;
    for (int i = 0; i < 40; i++)
        jsonl += nlohmann::json{{"body", "document " + std::to_string(i)}}.dump() + "\n";
    write(reg / "corpus" / "docs_a.jsonl", jsonl);
    write(reg / "corpus" / "docs_b.jsonl", jsonl);
    write(reg / "corpus" / "named.json", jsonl);  // a JSON-lines file with another ending
    write(reg / "datasets.toml", R"(# test registry
[datasets.one_text]
path = "corpus/one.txt"
format = "txt"

[datasets.docs]
path = "corpus/docs_*.jsonl"   # format told by the ending
text_field = "body"

[datasets.renamed]
path = "corpus/named.json"
format = "jsonl"
text_field = "body"

[datasets.fineweb]
path = ")" + kParquetDir + R"(/fineweb_like_*.parquet"
format = "parquet"

[datasets.toks]
path = "shards"
format = "shards"
tokenizer = "byte"

[datasets."org/with-slash"]
path = "/nonexistent/corpus"
format = "jsonl"
)");
    return reg / "datasets.toml";
}

TEST(DatasetRegistry, BuiltinNamesWithoutAFile) {
    const ScopedEnv unset("AGPT_DATASETS", nullptr);
    const DatasetRegistry reg = read_dataset_registry("");
    const DatasetEntry* e = reg.find("tinyshakespeare");
    ASSERT_NE(e, nullptr);
    EXPECT_TRUE(e->builtin());
    EXPECT_EQ(e->format, "txt");
    EXPECT_EQ(fs::path(e->path).filename(), "tinyshakespeare.txt");
    EXPECT_EQ(resolve_dataset("tinyshakespeare", reg, "training.dataset").path, e->path);
    EXPECT_TRUE(contains(reg.known_names(), "tinyshakespeare (built-in); no registry file"))
        << reg.known_names();

    // Training on the built-in name is unchanged: the whole file, byte tokens, tail held out.
    const Tokenizer byte = Tokenizer::load("byte");
    const TrainingData d = open_training_data("tinyshakespeare", byte, 0.1);
    const std::size_t n = fs::file_size(e->path);
    EXPECT_EQ(d.train.total() + d.val.total(), n);
    EXPECT_EQ(d.val.total(), static_cast<std::size_t>(static_cast<double>(n) * 0.1));
}

TEST(DatasetRegistry, EntriesResolveRelativeToTheirFile) {
    const fs::path d = fresh("entries");
    const fs::path file = make_registry(d);
    const DatasetRegistry reg = read_dataset_registry(file.string());
    EXPECT_EQ(reg.file, file.string());
    ASSERT_EQ(reg.entries.size(), 7u);  // tinyshakespeare + 6

    const fs::path base = d / "reg";
    EXPECT_EQ(reg.find("one_text")->path, (base / "corpus/one.txt").string());
    EXPECT_EQ(reg.find("docs")->path, (base / "corpus/docs_*.jsonl").string());
    EXPECT_EQ(reg.find("docs")->format, "jsonl");
    EXPECT_EQ(reg.find("docs")->text_field, "body");
    EXPECT_EQ(reg.find("fineweb")->path, kParquetDir + "/fineweb_like_*.parquet");
    EXPECT_EQ(reg.find("fineweb")->text_field, "text");
    EXPECT_EQ(reg.find("toks")->format, "shards");
    EXPECT_EQ(reg.find("toks")->tokenizer, "byte");
    EXPECT_EQ(reg.find("org/with-slash")->origin, file.string());

    // A registry named by a relative path: entries stay relative to its folder.
    {
        const ScopedCwd cwd(d);
        const DatasetRegistry rel = read_dataset_registry("reg/datasets.toml");
        EXPECT_EQ(rel.find("one_text")->path, "reg/corpus/one.txt");
        EXPECT_TRUE(fs::is_regular_file(rel.find("one_text")->path));
    }

    // Names win over paths; a path given directly is a path entry.
    const DatasetEntry p = resolve_dataset((base / "corpus/one.txt").string(), reg, "x");
    EXPECT_TRUE(p.is_path());
    EXPECT_EQ(p.format, "");
    const DatasetEntry g = resolve_dataset((base / "corpus/*.jsonl").string(), reg, "x");
    EXPECT_TRUE(g.is_path());
}

TEST(DatasetRegistry, UnknownNameListsTheKnownOnesAndTheFile) {
    const fs::path d = fresh("unknown");
    const fs::path file = make_registry(d);
    const DatasetRegistry reg = read_dataset_registry(file.string());
    const std::string e = error_of([&] { resolve_dataset("my_corpus", reg, "training.dataset"); });
    EXPECT_TRUE(contains(e, "training.dataset 'my_corpus': not a dataset name")) << e;
    EXPECT_TRUE(contains(e,
                         "tinyshakespeare (built-in); docs, fineweb, one_text, "
                         "org/with-slash, renamed, toks (" +
                             file.string() + ")"))
        << e;
    const std::string none =
        error_of([&] { resolve_dataset("my_corpus", read_dataset_registry(""), "--dataset"); });
    EXPECT_TRUE(contains(none, "--dataset 'my_corpus'")) << none;
    EXPECT_TRUE(contains(none, "AGPT_DATASETS")) << none;
    // A name whose path matches nothing says so, naming the registry.
    const std::string gone =
        error_of([&] { resolve_dataset("org/with-slash", reg, "training.dataset"); });
    EXPECT_TRUE(contains(gone,
                         "training.dataset 'org/with-slash': no file or folder matches its "
                         "path '/nonexistent/corpus' (" +
                             file.string() + ")"))
        << gone;
    // Through training, with the registry named.
    const std::string t = error_of(
        [&] { open_training_data("my_corpus", Tokenizer::load("byte"), 0.1, file.string()); });
    EXPECT_TRUE(contains(t, "one_text")) << t;
}

TEST(DatasetRegistry, BadFilesGiveOneErrorNamingFileAndKey) {
    const fs::path d = fresh("bad");
    const fs::path f = d / "datasets.toml";
    auto error_for = [&](const std::string& toml) {
        write(f, toml);
        return error_of([&] { read_dataset_registry(f.string()); });
    };
    const std::string fs_ = f.string();
    struct Case {
        std::string toml, expect;
    };
    const Case cases[] = {
        {"[datasets.a]\nformat = \"jsonl\"\n", fs_ + ": datasets.a: missing key 'path'"},
        {"[datasets.a]\npath = \"x.jsonl\"\nformat = \"csv\"\n",
         fs_ + ": datasets.a.format: unknown format 'csv'"},
        {"[datasets.a]\npath = \"x.jsonl\"\nformat = \"parqet\"\n", "did you mean 'parquet'?"},
        {"[datasets.a]\npath = \"x.jsonl\"\ntext_feild = \"body\"\n",
         fs_ + ": datasets.a: unknown key 'text_feild' (did you mean 'text_field'?)"},
        {"[datasets.a]\npath = \"corpus/\"\n", fs_ + ": datasets.a: missing key 'format'"},
        {"[datasets.a]\npath = 3\nformat = \"txt\"\n",
         fs_ + ": datasets.a.path: must be a string, got the integer 3"},
        {"[datasets.a]\npath = \"\"\nformat = \"txt\"\n", "datasets.a.path: must not be empty"},
        {"[datasets.a]\npath = \"s\"\nformat = \"shards\"\ntext_field = \"t\"\n",
         "datasets.a.text_field: token shards have no text field"},
        {"[datasets.tinyshakespeare]\npath = \"x.txt\"\n",
         "datasets.tinyshakespeare: 'tinyshakespeare' is a built-in dataset name"},
        {"[datasets]\na = \"x.txt\"\n", fs_ + ": datasets.a: must be a table"},
        {"[dataset.a]\npath = \"x.txt\"\n",
         fs_ + ": unknown key 'dataset' (did you mean 'datasets'?)"},
        {"datasets = 1\n", fs_ + ": 'datasets' must hold [datasets.NAME] tables"},
        {"[datasets.a]\npath = \"x.txt\n", fs_ + ":2:"},
    };
    for (const auto& c : cases) {
        const std::string e = error_for(c.toml);
        EXPECT_TRUE(contains(e, c.expect)) << c.toml << "\n-> " << e;
        EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    }
    // A bad registry stops training before anything is read.
    write(f, "[datasets.a]\nformat = \"jsonl\"\n");
    const std::string e = error_of(
        [&] { open_training_data("tinyshakespeare", Tokenizer::load("byte"), 0.1, f.string()); });
    EXPECT_TRUE(contains(e, "missing key 'path'")) << e;
}

TEST(DatasetRegistry, WhichFileIsRead) {
    const fs::path d = fresh("which");
    const fs::path file = make_registry(d);
    const ScopedEnv unset("AGPT_DATASETS", nullptr);
    std::string how;
    {
        const ScopedCwd cwd(d);  // no datasets.toml here
        EXPECT_EQ(find_dataset_registry("", &how), "");
        EXPECT_EQ(how, "none");
    }
    {
        const ScopedCwd cwd(d / "reg");  // ./datasets.toml
        EXPECT_EQ(find_dataset_registry("", &how), "datasets.toml");
        EXPECT_EQ(how, "./datasets.toml");
        EXPECT_NE(load_dataset_registry().find("docs"), nullptr);
    }
    {
        const ScopedEnv env("AGPT_DATASETS", file.string().c_str());
        EXPECT_EQ(find_dataset_registry("", &how), file.string());
        EXPECT_EQ(how, "$AGPT_DATASETS");
        EXPECT_EQ(find_dataset_registry((d / "reg/datasets.toml").string(), &how),
                  (d / "reg/datasets.toml").string());
        EXPECT_EQ(how, "given");
    }
    {
        const ScopedEnv env("AGPT_DATASETS", (d / "nope.toml").string().c_str());
        EXPECT_TRUE(contains(error_of([] { find_dataset_registry(""); }),
                             "AGPT_DATASETS='" + (d / "nope.toml").string() + "'"));
    }
    EXPECT_TRUE(contains(error_of([&] { load_dataset_registry((d / "no.toml").string()); }),
                         "dataset registry '" + (d / "no.toml").string() + "': no such file"));
}

// Raw-text entries train on exactly the tokens `data prepare --val-fraction split` writes.
TEST(DatasetRegistry, DocumentEntriesTrainOnWhatPrepareWrites) {
    const fs::path d = fresh("train");
    const fs::path file = make_registry(d);
    const DatasetRegistry reg = read_dataset_registry(file.string());
    const Tokenizer byte = Tokenizer::load("byte");
    for (const char* name : {"docs", "renamed", "fineweb"}) {
        SCOPED_TRACE(name);
        const DatasetEntry* e = reg.find(name);
        PrepareOptions opt;
        opt.inputs = {e->path};
        opt.format = e->format;
        opt.text_field = e->text_field;
        opt.val_fraction = 0.1;
        opt.workers = 2;
        opt.out = (d / (std::string("prepared_") + name)).string();
        const PrepareSummary s = prepare_dataset(opt);
        const TrainingData t = open_training_data(name, byte, 0.1, file.string());
        EXPECT_EQ(t.source, e->path);
        EXPECT_EQ(tokens_of(t.train), shard_tokens(opt.out, "train_"));
        EXPECT_EQ(tokens_of(t.val), shard_tokens(opt.out, "val_"));
        EXPECT_GT(s.val_tokens, 0u);
        const uint64_t documents = std::string(name) == "fineweb" ? 6000 : name[0] == 'd' ? 80 : 40;
        EXPECT_EQ(s.documents, documents);  // fineweb: two files; docs: two files
    }
    // One document: nothing would be held out, so the last tenth of its tokens is.
    const TrainingData one = open_training_data("one_text", byte, 0.1, file.string());
    const std::size_t n = fs::file_size(d / "reg/corpus/one.txt") + 1;  // + EOS
    EXPECT_EQ(one.train.total() + one.val.total(), n);
    EXPECT_EQ(one.val.total(), n / 10);
    std::vector<int32_t> all = tokens_of(one.train), val = tokens_of(one.val);
    all.insert(all.end(), val.begin(), val.end());
    std::vector<int32_t> expected = byte.encode("a single text file is a single document\n");
    expected.push_back(ByteTokenizer::kEos);
    EXPECT_EQ(all, expected);

    // A .jsonl path given directly is read as documents too (not as one text).
    const TrainingData direct =
        open_training_data(kParquetDir + "/expected_texts.jsonl", byte, 0.1);
    EXPECT_EQ(tokens_of(direct.train).front(), 'F');  // "First Citizen", not '{'
}

TEST(DatasetRegistry, ShardEntriesAndTheTokenizerRule) {
    const fs::path d = fresh("shards");
    const fs::path file = make_registry(d);
    PrepareOptions opt;
    opt.inputs = {(d / "reg/corpus").string()};
    opt.format = "jsonl";
    opt.text_field = "body";
    opt.val_fraction = 0.1;
    opt.shard_tokens = 500;
    opt.out = (d / "reg/shards").string();
    prepare_dataset(opt);
    const Tokenizer byte = Tokenizer::load("byte");
    const TrainingData t = open_training_data("toks", byte, 0.1, file.string());
    EXPECT_GT(t.train.sizes.size(), 1u);  // one span per shard
    EXPECT_EQ(tokens_of(t.train), shard_tokens(opt.out, "train_"));
    EXPECT_EQ(tokens_of(t.val), shard_tokens(opt.out, "val_"));

    // The entry says "byte": another tokenizer is refused, naming the entry and its file.
    const Tokenizer bpe = Tokenizer::load(kBpe1024);
    std::string e = error_of([&] { open_training_data("toks", bpe, 0.1, file.string()); });
    EXPECT_TRUE(contains(e, "training.dataset 'toks': its registry entry (" + file.string() +
                                ") is for the tokenizer byte"))
        << e;
    // The same shards by path: their manifest.json's vocabulary size is checked.
    e = error_of([&] { open_training_data(opt.out, bpe, 0.1); });
    EXPECT_TRUE(contains(e, "prepared for a vocabulary of 258 tokens")) << e;

    // Sameness is by content: the byte tokenizer saved as tokenizer.json is "byte".
    const fs::path saved = d / "saved";
    fs::create_directories(saved);
    byte.save_into(saved.string());
    EXPECT_TRUE(same_tokenizer(byte, Tokenizer::load((saved / "tokenizer.json").string())));
    EXPECT_TRUE(same_tokenizer(bpe, Tokenizer::load(kBpe1024)));
    EXPECT_FALSE(same_tokenizer(byte, bpe));
    DatasetEntry entry = *read_dataset_registry(file.string()).find("toks");
    entry.tokenizer = (saved / "tokenizer.json").string();
    check_dataset_tokenizer(entry, byte, "x");  // no throw
    entry.tokenizer = (d / "missing.json").string();
    e = error_of([&] { check_dataset_tokenizer(entry, byte, "x"); });
    EXPECT_TRUE(contains(e, "datasets.toks.tokenizer")) << e;
}

// A text file over 2 MiB is encoded in pieces on several workers, and many small text files are
// encoded together: the tokens are those of encoding each file whole, whatever the workers.
TEST(DatasetRegistry, LargeAndManyTextFilesGiveTheTokensOfWholeFiles) {
    const fs::path d = fresh("large_text");
    std::string shakespeare;
    {
        const DatasetRegistry reg = read_dataset_registry("");
        std::ifstream in(reg.find("tinyshakespeare")->path, std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        shakespeare = ss.str();
    }
    std::string big;
    for (int i = 0; i < 5; i++) big += shakespeare;  // 5.6 MB: several pieces
    write(d / "big.txt", big);
    for (int i = 0; i < 30; i++)
        write(d / "small" / fmt::format("{:02}.txt", i), shakespeare.substr(i * 1000, 1000 + i));
    for (const std::string& spec : {std::string("byte"), kBpe1024}) {
        SCOPED_TRACE(spec);
        const Tokenizer tok = Tokenizer::load(spec);
        PrepareOptions opt;
        opt.inputs = {(d / "big.txt").string()};
        opt.val_fraction = 0;
        std::vector<int32_t> expected = tok.encode(big);
        expected.push_back(*tok.eos_id());
        for (int workers : {1, 2}) {
            opt.workers = workers;
            EXPECT_EQ(prepare_in_memory(opt, tok).train, expected) << workers;
        }
        opt.inputs = {(d / "small").string()};
        expected.clear();
        for (int i = 0; i < 30; i++) {
            const auto ids = tok.encode(shakespeare.substr(i * 1000, 1000 + i));
            expected.insert(expected.end(), ids.begin(), ids.end());
            expected.push_back(*tok.eos_id());
        }
        for (int workers : {1, 2}) {
            opt.workers = workers;
            const PreparedTokens t = prepare_in_memory(opt, tok);
            EXPECT_EQ(t.train, expected) << workers;
            EXPECT_EQ(t.summary.documents, 30u);
        }
    }
}

}  // namespace
}  // namespace agpt
