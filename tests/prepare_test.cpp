#include <gtest/gtest.h>

#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/prepare.h"
#include "data/token_shards.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

fs::path fresh(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_prepare_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// 3 inputs: a text file (one document), JSON lines, and zstd-compressed JSON lines.
fs::path make_inputs(const fs::path& d) {
    const fs::path in = d / "in";
    fs::create_directories(in);
    std::ofstream(in / "a.txt") << "a whole file is one document";
    {
        std::ofstream j(in / "b.jsonl");
        for (int i = 0; i < 50; i++)
            j << nlohmann::json{{"text", "doc " + std::to_string(i) + " é"}, {"id", i}}.dump()
              << "\n";
        j << "\n" << nlohmann::json{{"text", nullptr}}.dump() << "\n";  // blank and null: skipped
    }
    std::string plain;
    for (int i = 0; i < 30; i++)
        plain += nlohmann::json{{"text", "zst " + std::to_string(i)}}.dump() + "\n";
    std::string packed(ZSTD_compressBound(plain.size()), '\0');
    packed.resize(ZSTD_compress(packed.data(), packed.size(), plain.data(), plain.size(), 3));
    std::ofstream(in / "c.jsonl.zst", std::ios::binary) << packed;
    return in;
}

TEST(Prepare, SameShardsWhateverTheWorkersAndEosEndsEveryDocument) {
    const fs::path d = fresh("workers");
    const fs::path in = make_inputs(d);
    PrepareOptions opt;
    opt.inputs = {in.string()};
    opt.val_fraction = 0.1;
    opt.shard_tokens = 300;
    opt.workers = 1;
    opt.out = (d / "one").string();
    const PrepareSummary s1 = prepare_dataset(opt);
    opt.workers = 2;
    opt.out = (d / "two").string();
    prepare_dataset(opt);

    EXPECT_EQ(s1.documents, 81u);  // 1 + 50 + 30
    EXPECT_GT(s1.train_shards, 1);
    for (const auto& e : fs::directory_iterator(d / "one"))
        EXPECT_EQ(slurp(e.path()), slurp(d / "two" / e.path().filename())) << e.path();

    // Documents 10, 20, ..., 80 (1-based) are validation; every document ends with EOS.
    uint64_t eos_train = 0, eos_val = 0, tokens = 0;
    for (const auto& shard : list_token_shards((d / "one").string())) {
        const TokenShard sh(shard);
        tokens += sh.size();
        for (std::size_t i = 0; i < sh.size(); i++)
            if (sh.at(i) == static_cast<uint32_t>(ByteTokenizer::kEos))
                (shard.find("val") != std::string::npos ? eos_val : eos_train)++;
    }
    EXPECT_EQ(eos_val, 8u);
    EXPECT_EQ(eos_train, 73u);
    EXPECT_EQ(tokens, s1.train_tokens + s1.val_tokens);
    const auto manifest = nlohmann::json::parse(slurp(d / "one" / "manifest.json"));
    EXPECT_EQ(manifest["documents"], 81);
    EXPECT_EQ(manifest["sources"].size(), 3u);
    EXPECT_EQ(manifest["vocab_size"], ByteTokenizer::kVocabSize);
}

TEST(Prepare, BadInputStopsWithTheFileAndLineAndLeavesNothing) {
    const fs::path d = fresh("bad");
    const fs::path in = make_inputs(d);
    std::ofstream(in / "d.jsonl") << "{\"text\": \"ok\"}\n{not json\n";
    PrepareOptions opt;
    opt.inputs = {in.string()};
    opt.out = (d / "out").string();
    try {
        prepare_dataset(opt);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("d.jsonl:2"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(d / "out"));
    EXPECT_FALSE(fs::exists(d / "out.tmp"));

    std::ofstream(in / "d.jsonl", std::ios::trunc) << "{\"title\": \"no text\"}\n";
    opt.skip_bad_files = true;
    const PrepareSummary s = prepare_dataset(opt);
    ASSERT_EQ(s.skipped.size(), 1u);
    EXPECT_NE(s.skipped[0].find("no 'text' field"), std::string::npos) << s.skipped[0];

    opt.inputs = {(d / "nothing_*.jsonl").string()};
    opt.out = (d / "out2").string();
    EXPECT_THROW(prepare_dataset(opt), Error);
    opt.inputs = {in.string()};
    opt.out = (d / "out").string();  // exists now
    EXPECT_THROW(prepare_dataset(opt), Error);
}

TEST(Prepare, ParquetDocumentsInRowOrder) {
    const fs::path d = fresh("parquet");
    PrepareOptions opt;
    opt.inputs = {std::string(AGPT_TEST_DATA_DIR) + "/parquet/fineweb_like_snappy.parquet"};
    opt.val_fraction = 0;
    opt.out = (d / "out").string();
    const PrepareSummary s = prepare_dataset(opt);
    EXPECT_EQ(s.documents, 3000u);
    // The byte tokenizer makes the token count the text bytes plus one EOS per document.
    EXPECT_EQ(s.train_tokens, s.text_bytes + 3000);
}

}  // namespace
}  // namespace agpt
