// Byte-level BPE: pre-tokenisation, Hugging Face compatibility (ids from `tokenizers` 0.23.2 in
// tests/data), round trips, training, the tiktoken format and bad files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "data/bpe_bench.h"
#include "data/bpe_byte_unicode.h"
#include "data/bpe_tokenizer.h"
#include "data/pretokenize.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string shakespeare() {
    static const std::string text =
        read_all(std::string(AGPT_SOURCE_DIR) + "/data/tinyshakespeare.txt");
    return text;
}

const std::string kHfJson = std::string(AGPT_TEST_DATA_DIR) + "/hf_bytelevel_bpe_1024.json";

const BpeTokenizer& hf_tokenizer() {
    static const BpeTokenizer tok = BpeTokenizer::load(kHfJson);
    return tok;
}

std::vector<std::string> pieces(std::string_view text, PretokenPattern p) {
    std::vector<std::string> out;
    for_each_pretoken(text, p, [&](std::string_view piece) { out.emplace_back(piece); });
    return out;
}

std::string random_bytes(std::mt19937& rng, std::size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xFF);
    return s;
}

// A temporary folder per test, removed afterwards.
struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() /
               ("agpt_bpe_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name, const std::string& content) const {
        const std::string p = (path / name).string();
        std::ofstream(p, std::ios::binary) << content;
        return p;
    }
};

// ---- pre-tokenisation -------------------------------------------------------------------------
// Expected pieces were derived from the regexes by hand and checked with Python's `regex` module
// (regex.findall with each pattern), an independent implementation.

TEST(BpePretokenize, Gpt2Pieces) {
    const auto p = PretokenPattern::gpt2;
    using V = std::vector<std::string>;
    EXPECT_EQ(pieces("Hello world", p), (V{"Hello", " world"}));
    EXPECT_EQ(pieces("  leading", p), (V{" ", " leading"}));
    EXPECT_EQ(pieces("don't I'LL", p), (V{"don", "'t", " I", "'", "LL"}));
    EXPECT_EQ(pieces("123 4567", p), (V{"123", " 4567"}));
    EXPECT_EQ(pieces("a  \n b", p), (V{"a", "  \n", " b"}));
    EXPECT_EQ(pieces("x \n  ", p), (V{"x", " \n  "}));
    EXPECT_EQ(pieces("hi!!  ?x", p), (V{"hi", "!!", " ", " ?", "x"}));
    EXPECT_EQ(pieces("\xC3\x9Cn\xC3\xAF \xE4\xB8\xAD\xE6\x96\x87", p),
              (V{"\xC3\x9Cn\xC3\xAF", " \xE4\xB8\xAD\xE6\x96\x87"}));
    EXPECT_EQ(pieces("", p), V{});
}

TEST(BpePretokenize, Gpt4Pieces) {
    const auto p = PretokenPattern::gpt4;
    using V = std::vector<std::string>;
    EXPECT_EQ(pieces("Hello world", p), (V{"Hello", " world"}));
    EXPECT_EQ(pieces("don't I'LL", p), (V{"don", "'t", " I", "'LL"}));
    EXPECT_EQ(pieces("123 4567", p), (V{"123", " ", "456", "7"}));
    EXPECT_EQ(pieces("a  \n b", p), (V{"a", "  \n", " b"}));
    EXPECT_EQ(pieces("x \n  ", p), (V{"x", " \n", "  "}));
    EXPECT_EQ(pieces("(hello) ...\n\nnext", p), (V{"(hello", ")", " ...\n\n", "next"}));
    EXPECT_EQ(pieces("\tword", p), (V{"\tword"}));
    // U+017F (long s) case-folds to 's', so "'ſ" is a contraction.
    EXPECT_EQ(pieces("'\xC5\xBFx", p), (V{"'\xC5\xBF", "x"}));
    // Only the tiktoken >= 0.7 spelling keeps trailing whitespace with a newline together.
    EXPECT_EQ(pieces("x \n  ", PretokenPattern::gpt4_tiktoken), (V{"x", " \n  "}));
    EXPECT_EQ(pieces("a  \n b", PretokenPattern::gpt4_tiktoken), (V{"a", "  \n", " b"}));
}

TEST(BpePretokenize, RegexSpellingsAreRecognised) {
    for (auto p : {PretokenPattern::gpt2, PretokenPattern::gpt4, PretokenPattern::gpt4_tiktoken}) {
        EXPECT_EQ(pretoken_pattern_from_regex(pretoken_regex(p)), p);
        EXPECT_EQ(pretoken_pattern_from_name(pretoken_pattern_name(p)), p);
    }
    EXPECT_EQ(pretoken_pattern_from_regex(R"(\w+|\s+)"), std::nullopt);
    EXPECT_THROW(pretoken_pattern_from_name("gpt5"), Error);
}

TEST(BpePretokenize, InvalidUtf8PiecesConcatenateBack) {
    std::mt19937 rng(7);
    for (int i = 0; i < 200; i++) {
        const std::string s = random_bytes(rng, 1 + rng() % 64);
        for (auto p : {PretokenPattern::gpt2, PretokenPattern::gpt4}) {
            std::string joined;
            for (const auto& piece : pieces(s, p)) {
                EXPECT_FALSE(piece.empty());
                joined += piece;
            }
            EXPECT_EQ(joined, s);
        }
    }
}

TEST(BpePretokenize, SafeCutSplitsLikeTheWholeText) {
    const std::string alphabet[] = {"a",    "Z",   " ",   "  ", "\n",       "\r\n",
                                    ".",    "'s",  "7",   "\t", "\xC3\xA9", "\xE2\x80\x94",
                                    "x\ny", "!\n", "\xFF"};
    std::mt19937 rng(11);
    for (int round = 0; round < 300; round++) {
        std::string text;
        const int n = 1 + static_cast<int>(rng() % 40);
        for (int i = 0; i < n; i++) text += alphabet[rng() % std::size(alphabet)];
        const std::size_t cut = pretoken_safe_cut(text);
        if (cut == 0) continue;
        ASSERT_LT(cut, text.size());
        for (auto p :
             {PretokenPattern::gpt2, PretokenPattern::gpt4, PretokenPattern::gpt4_tiktoken}) {
            auto split = pieces(std::string_view(text).substr(0, cut), p);
            for (auto& piece : pieces(std::string_view(text).substr(cut), p))
                split.push_back(piece);
            EXPECT_EQ(split, pieces(text, p)) << "cut " << cut << " in '" << text << "'";
        }
    }
}

// ---- Hugging Face tokenizer.json ----------------------------------------------------------------

TEST(BpeHf, EncodesLikeHuggingFace) {
    const auto ref = nlohmann::json::parse(
        read_all(std::string(AGPT_TEST_DATA_DIR) + "/hf_bytelevel_bpe_1024_encodings.json"));
    const BpeTokenizer& tok = hf_tokenizer();
    EXPECT_EQ(tok.vocab_size(), 1024);
    EXPECT_EQ(tok.pattern(), PretokenPattern::gpt2);
    EXPECT_EQ(tok.bos_id(), 0);
    EXPECT_EQ(tok.eos_id(), 1);
    const auto& samples = ref["samples"];
    ASSERT_EQ(samples.size(), ref["ids"].size());
    for (std::size_t i = 0; i < samples.size(); i++) {
        const auto text = samples[i].get<std::string>();
        const auto want = ref["ids"][i].get<std::vector<int32_t>>();
        const std::vector<int32_t> got = tok.encode(text);
        EXPECT_EQ(got, want) << "sample " << i;
        EXPECT_EQ(tok.decode(got), text) << "sample " << i;
        EXPECT_EQ(tok.encode_with_specials(text), want) << "sample " << i;
    }
}

TEST(BpeHf, TinyShakespeareTokenCount) {
    const auto ref = nlohmann::json::parse(
        read_all(std::string(AGPT_TEST_DATA_DIR) + "/hf_bytelevel_bpe_1024_encodings.json"));
    const std::vector<int32_t> ids = hf_tokenizer().encode(shakespeare());
    EXPECT_EQ(ids.size(), ref["tinyshakespeare_tokens"].get<std::size_t>());
    EXPECT_EQ(ids.size(), 460035u);
    EXPECT_EQ(hf_tokenizer().decode(ids), shakespeare());
}

TEST(BpeHf, SaveAndReloadKeepsEncodings) {
    TempDir dir;
    const std::string path = (dir.path / "again.json").string();
    hf_tokenizer().save_hf_json(path);
    const BpeTokenizer again = BpeTokenizer::load(path);
    EXPECT_EQ(again.vocab_size(), hf_tokenizer().vocab_size());
    EXPECT_EQ(again.merge_count(), hf_tokenizer().merge_count());
    const std::string text = shakespeare().substr(0, 200000);
    EXPECT_EQ(again.encode(text), hf_tokenizer().encode(text));
    EXPECT_EQ(again.encode_with_specials("<|bos|>hi<|eos|>"),
              hf_tokenizer().encode_with_specials("<|bos|>hi<|eos|>"));
}

TEST(BpeHf, MergesAsStringsOrPairs) {
    // The same two-merge vocabulary in both spellings of model.merges.
    auto make = [](const std::string& merges) {
        std::string vocab;
        for (int b = 0; b < 256; b++) {
            const std::string tok = bpe_bytes_to_unicode(std::string(1, static_cast<char>(b)));
            vocab += nlohmann::json(tok).dump() + ": " + std::to_string(b) + ", ";
        }
        vocab += "\"ab\": 256, \"abc\": 257";
        return R"({"model": {"type": "BPE", "vocab": {)" + vocab + R"(}, "merges": )" + merges +
               R"(}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}})";
    };
    const BpeTokenizer strings = BpeTokenizer::from_hf_json(make(R"(["a b", "ab c"])"), "strings");
    const BpeTokenizer pairs =
        BpeTokenizer::from_hf_json(make(R"([["a", "b"], ["ab", "c"]])"), "pairs");
    EXPECT_EQ(strings.encode("abcab"), (std::vector<int32_t>{257, 256}));
    EXPECT_EQ(pairs.encode("abcab"), (std::vector<int32_t>{257, 256}));
}

// ---- round trips --------------------------------------------------------------------------------

TEST(BpeRoundTrip, RandomBytesAndInvalidUtf8) {
    BpeTrainOptions opt;
    opt.vocab_size = 600;
    const std::string text = shakespeare().substr(0, 100000);
    const BpeTokenizer gpt4 = BpeTokenizer::train_texts({text}, opt);
    opt.pattern = PretokenPattern::gpt2;
    const BpeTokenizer gpt2 = BpeTokenizer::train_texts({text}, opt);
    std::mt19937 rng(3);
    std::vector<std::string> inputs = {"\xFF\xFE\xFD",
                                       "\xC3",
                                       "\xE2\x82",
                                       "a\xC0\xAFz",
                                       "\xED\xA0\x80",
                                       "\xF4\x90\x80\x80",
                                       "\xF0\x9F\x99\x82\x80",
                                       std::string("nul\0byte", 8),
                                       "<|bos|> is text here",
                                       ""};
    for (int i = 0; i < 100; i++) inputs.push_back(random_bytes(rng, rng() % 300));
    for (const BpeTokenizer* tok : {&hf_tokenizer(), &gpt4, &gpt2}) {
        for (const std::string& s : inputs) {
            const auto ids = tok->encode(s);
            EXPECT_EQ(tok->decode(ids), s);
            for (const BpeSpecialToken& sp : tok->specials())
                EXPECT_EQ(std::find(ids.begin(), ids.end(), sp.id), ids.end());
        }
    }
}

TEST(BpeRoundTrip, SpecialTokens) {
    const BpeTokenizer& tok = hf_tokenizer();
    const std::string text = "<|bos|>Hello<|eos|><|bos|";
    const auto ids = tok.encode_with_specials(text);
    EXPECT_EQ(ids.front(), 0);
    EXPECT_NE(std::find(ids.begin(), ids.end(), 1), ids.end());
    EXPECT_EQ(tok.decode(ids), text);
    EXPECT_EQ(tok.decode(ids, /*skip_specials=*/true), "Hello<|bos|");
    // Plain encode treats special texts as ordinary bytes.
    const auto plain = tok.encode(text);
    EXPECT_EQ(std::find(plain.begin(), plain.end(), 0), plain.end());
    EXPECT_EQ(tok.decode(plain), text);
}

TEST(BpeRoundTrip, DecodeRejectsUnknownIds) {
    const std::vector<int32_t> bad = {5, 1024};
    EXPECT_THROW(hf_tokenizer().decode(bad), Error);
    const std::vector<int32_t> negative = {-1};
    EXPECT_THROW(hf_tokenizer().decode(negative), Error);
}

TEST(BpeRoundTrip, ThreadsGetTheSameIds) {
    const std::string text = shakespeare().substr(0, 300000);
    const std::vector<int32_t> want = hf_tokenizer().encode(text);
    std::vector<std::vector<int32_t>> got(2);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; t++)
        threads.emplace_back([&, t] { got[t] = hf_tokenizer().encode(text); });
    for (auto& th : threads) th.join();
    EXPECT_EQ(got[0], want);
    EXPECT_EQ(got[1], want);
}

// ---- training -----------------------------------------------------------------------------------

// Worked by hand. "aaabdaaabac" is one piece; its pair counts are aa:4 ab:2 bd:1 da:1 ba:1 ac:1.
// 1. (a,a) -> 256 "aa"; the word becomes aa a b d aa a b a c: (aa,a):2, (a,b):2, rest 1.
// 2. tie at 2: (97,98) < (256,97), so (a,b) -> 257 "ab"; word aa ab d aa ab a c.
// 3. (aa,ab):2 -> 258 "aaab"; word aaab d aaab a c, every pair now counts 1.
// 4. tie at 1: the smallest pair is (97,99) "ac" -> 259.
// Specials follow: <|bos|> 260, <|eos|> 261.
TEST(BpeTrain, PinnedSmallVocabulary) {
    BpeTrainOptions opt;
    opt.vocab_size = 262;
    opt.pattern = PretokenPattern::gpt2;
    const BpeTokenizer tok = BpeTokenizer::train_texts({"aaabdaaabac"}, opt);
    ASSERT_EQ(tok.vocab_size(), 262);
    EXPECT_EQ(tok.token_bytes(256), "aa");
    EXPECT_EQ(tok.token_bytes(257), "ab");
    EXPECT_EQ(tok.token_bytes(258), "aaab");
    EXPECT_EQ(tok.token_bytes(259), "ac");
    EXPECT_EQ(tok.bos_id(), 260);
    EXPECT_EQ(tok.eos_id(), 261);
    EXPECT_EQ(tok.encode("aaabdaaabac"), (std::vector<int32_t>{258, 'd', 258, 259}));
    // "aaaab": (a,a) at 0 first, then (a,a) at 2 (rank 0 beats (a,b) at 3), leaving aa aa b;
    // " ac": the space has no merge, (a,c) does.
    EXPECT_EQ(tok.encode("aaaab ac"), (std::vector<int32_t>{256, 256, 'b', ' ', 259}));
    EXPECT_EQ(tok.encode_with_specials("<|bos|>aaab<|eos|>"),
              (std::vector<int32_t>{260, 258, 261}));
}

TEST(BpeTrain, SaveLoadGivesIdenticalEncodings) {
    TempDir dir;
    const std::string text = shakespeare();
    for (auto pattern : {PretokenPattern::gpt4, PretokenPattern::gpt2}) {
        BpeTrainOptions opt;
        opt.vocab_size = 2048;
        opt.pattern = pattern;
        int calls = 0;
        opt.progress = [&](const BpeTrainProgress& p) {
            calls++;
            EXPECT_LE(p.done, p.total);
        };
        const BpeTokenizer tok = BpeTokenizer::train_texts({text}, opt);
        EXPECT_GT(calls, 2);
        EXPECT_EQ(tok.vocab_size(), 2048);
        EXPECT_EQ(tok.merge_count(), 2048u - 256 - 2);
        const std::string path = (dir.path / "tok.json").string();
        tok.save_hf_json(path);
        const BpeTokenizer again = BpeTokenizer::load(path);
        EXPECT_EQ(again.pattern(), pattern);
        EXPECT_EQ(again.vocab_size(), tok.vocab_size());
        EXPECT_EQ(again.bos_id(), tok.bos_id());
        EXPECT_EQ(again.eos_id(), tok.eos_id());
        const auto ids = tok.encode(text);
        EXPECT_EQ(again.encode(text), ids);
        EXPECT_EQ(tok.decode(ids), text);
        // A vocabulary trained on the text compresses it far better than 1024 merges from HF.
        EXPECT_LT(ids.size(), 400000u);
    }
}

TEST(BpeTrain, FilesReadInChunksTrainLikeOneText) {
    TempDir dir;
    const std::string text = shakespeare().substr(0, 300000) + "\r\n trailing  \n ";
    const std::string path = dir.file("part.txt", text);
    BpeTrainOptions opt;
    opt.vocab_size = 700;
    const BpeTokenizer whole = BpeTokenizer::train_texts({text}, opt);
    opt.chunk_bytes = 4096;
    const BpeTokenizer chunked = BpeTokenizer::train_files({path}, opt);
    ASSERT_EQ(chunked.vocab_size(), whole.vocab_size());
    for (int32_t id = 256; id < whole.vocab_size() - 2; id++)
        EXPECT_EQ(chunked.token_bytes(id), whole.token_bytes(id)) << "id " << id;
}

TEST(BpeTrain, StopsWhenNoPairIsLeft) {
    BpeTrainOptions opt;
    opt.vocab_size = 1000;
    opt.specials = {"<|eos|>"};
    const BpeTokenizer tok = BpeTokenizer::train_texts({"abc abc"}, opt);
    // Pieces "abc" and " abc". (a,b) and (b,c) both count 2; the smaller pair (a,b) -> 256, then
    // (ab,c):2 -> 257, then (' ',abc):1 -> 258, and no pair is left.
    EXPECT_EQ(tok.merge_count(), 3u);
    EXPECT_EQ(tok.vocab_size(), 256 + 3 + 1);
    EXPECT_EQ(tok.encode("abc abc"), (std::vector<int32_t>{257, 258}));
}

TEST(BpeTrain, RejectsImpossibleOptions) {
    BpeTrainOptions opt;
    opt.vocab_size = 257;
    EXPECT_THROW(BpeTokenizer::train_texts({"x"}, opt), Error);
    opt.vocab_size = 300;
    opt.specials = {"<|a|>", "<|a|>"};
    EXPECT_THROW(BpeTokenizer::train_texts({"x"}, opt), Error);
    opt.specials = {};
    EXPECT_THROW(BpeTokenizer::train_files({"/nonexistent/agpt_corpus.txt"}, opt), Error);
}

// ---- tiktoken -----------------------------------------------------------------------------------

std::string base64(std::string_view s) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < s.size(); i += 3) {
        uint32_t n = static_cast<unsigned char>(s[i]) << 16;
        if (i + 1 < s.size()) n |= static_cast<unsigned char>(s[i + 1]) << 8;
        if (i + 2 < s.size()) n |= static_cast<unsigned char>(s[i + 2]);
        out += tbl[(n >> 18) & 63];
        out += tbl[(n >> 12) & 63];
        out += i + 1 < s.size() ? tbl[(n >> 6) & 63] : '=';
        out += i + 2 < s.size() ? tbl[n & 63] : '=';
    }
    return out;
}

std::string tiktoken_ranks(const std::vector<std::string>& extra) {
    std::string out;
    for (int b = 0; b < 256; b++)
        out += base64(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
    for (std::size_t i = 0; i < extra.size(); i++)
        out += base64(extra[i]) + " " + std::to_string(256 + i) + "\n";
    return out;
}

TEST(BpeTiktoken, MergesByRankOfTheConcatenation) {
    TempDir dir;
    // Ranks: ab 256, bc 257, abc 258, cd 259, xyz 260 (no path of merges reaches "xyz").
    const std::string path =
        dir.file("tiny.tiktoken", tiktoken_ranks({"ab", "bc", "abc", "cd", "xyz"}));
    BpeTiktokenOptions opt;
    opt.specials = {{"<|endoftext|>", -1}, {"<|fim|>", 300}};
    const BpeTokenizer tok = BpeTokenizer::load(path, opt);
    EXPECT_EQ(tok.vocab_size(), 301);
    EXPECT_EQ(tok.special_id("<|endoftext|>"), 261);
    EXPECT_EQ(tok.eos_id(), 261);
    // abcd: ab (256) beats bc (257) and cd (259); then ab+c = abc (258); abc+d is no token.
    EXPECT_EQ(tok.encode("abcd"), (std::vector<int32_t>{258, 'd'}));
    // bcd: bc (257) beats cd (259).
    EXPECT_EQ(tok.encode("bcd"), (std::vector<int32_t>{257, 'd'}));
    // A piece that is a token is taken whole, as tiktoken does.
    EXPECT_EQ(tok.encode("xyz"), (std::vector<int32_t>{260}));
    EXPECT_EQ(tok.encode_with_specials("ab<|endoftext|>"), (std::vector<int32_t>{256, 261}));
    EXPECT_EQ(tok.decode(tok.encode("abcd xyz\xFF")), "abcd xyz\xFF");

    // Saved as tokenizer.json (ignore_merges, every split listed), it encodes the same.
    const std::string json_path = (dir.path / "tiny.json").string();
    tok.save_hf_json(json_path);
    const BpeTokenizer again = BpeTokenizer::load(json_path);
    for (const char* s : {"abcd", "bcd", "xyz", "abcabcxyzcd", "hello abc"})
        EXPECT_EQ(again.encode(s), tok.encode(s)) << s;
}

// ---- streams (what `agpt tokenizer encode|decode` run)
// -------------------------------------------

std::vector<int32_t> encode_in_chunks(const BpeTokenizer& tok, const std::string& text,
                                      bool with_specials, std::size_t chunk_bytes) {
    std::istringstream in(text);
    std::vector<int32_t> ids;
    tok.encode_stream(
        in, [&](std::span<const int32_t> part) { ids.insert(ids.end(), part.begin(), part.end()); },
        with_specials, chunk_bytes);
    return ids;
}

TEST(BpeStream, ChunkedEncodingEqualsWholeEncoding) {
    const BpeTokenizer& tok = hf_tokenizer();
    const std::string text = shakespeare().substr(0, 200000) + "\n  <|eos|>tail \n\n ";
    EXPECT_EQ(encode_in_chunks(tok, text, false, 1000), tok.encode(text));
    EXPECT_EQ(encode_in_chunks(tok, text, true, 777), tok.encode_with_specials(text));
    EXPECT_EQ(encode_in_chunks(tok, "", false, 64), std::vector<int32_t>{});
}

TEST(BpeStream, DecodeStreamReadsIdsAndRejectsWords) {
    const BpeTokenizer& tok = hf_tokenizer();
    const std::string text = "First Citizen:\nBefore we proceed";
    std::string ids_text;
    for (int32_t id : tok.encode(text)) ids_text += std::to_string(id) + "  \n";
    std::istringstream in(ids_text);
    std::ostringstream out;
    tok.decode_stream(in, out, "ids.txt");
    EXPECT_EQ(out.str(), text);
    std::istringstream bad("12 x7 3");
    std::ostringstream ignored;
    try {
        tok.decode_stream(bad, ignored, "stdin");
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "stdin: 'x7' is not a token id");
    }
}

TEST(BpeHf, AddPrefixSpace) {
    auto j = nlohmann::json::parse(read_all(kHfJson));
    j["pre_tokenizer"]["add_prefix_space"] = true;
    const BpeTokenizer tok = BpeTokenizer::from_hf_json(j.dump(), "prefix.json");
    const BpeTokenizer& plain = hf_tokenizer();
    EXPECT_EQ(tok.encode("Hello there"), plain.encode(" Hello there"));
    EXPECT_EQ(tok.encode(" Hello"), plain.encode(" Hello"));
    // Hugging Face adds the space to each stretch between special tokens.
    std::vector<int32_t> want = plain.encode(" a");
    want.push_back(1);
    for (int32_t id : plain.encode(" b")) want.push_back(id);
    EXPECT_EQ(tok.encode_with_specials("a<|eos|>b"), want);
    // Only the start of a stream is the start of the text.
    const std::string text = shakespeare().substr(0, 50000);
    EXPECT_EQ(encode_in_chunks(tok, text, false, 1000), tok.encode(text));
}

TEST(BpeBench, MeasuresThroughput) {
    const BpeThroughput r =
        bpe_measure_throughput(hf_tokenizer(), shakespeare().substr(0, 100000), 1);
    EXPECT_EQ(r.bytes, 100000u);
    EXPECT_GT(r.tokens, 10000u);
    EXPECT_GT(r.encode_cold_mb_s, 0);
    EXPECT_GT(r.encode_warm_mb_s, 0);
    EXPECT_GT(r.decode_mb_s, 0);
    EXPECT_THROW(bpe_measure_throughput(hf_tokenizer(), "x", 0), Error);
}

// ---- bad files ----------------------------------------------------------------------------------

// The error is one line that names the file and contains `what`.
void expect_load_error(const std::string& path, const std::string& what) {
    try {
        BpeTokenizer::load(path);
        ADD_FAILURE() << "no error for " << path;
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
}

TEST(BpeBadFiles, ClearErrorNamingTheFile) {
    TempDir dir;
    expect_load_error(dir.file("broken.json", "{\"model\": {\"type\": \"BPE\", "),
                      "not valid JSON");
    expect_load_error(
        dir.file("wordpiece.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})"),
        "model type 'WordPiece' is not supported");
    expect_load_error(dir.file("nomodel.json", R"({"version": "1.0"})"), "no \"model\"");
    std::string json = read_all(kHfJson);
    const std::string first_merge = "\"\xC4\xA0\",";  // the first merge's left token "Ġ"
    const auto at = json.find("\"merges\"");
    ASSERT_NE(at, std::string::npos);
    const auto m = json.find(first_merge, at);
    ASSERT_NE(m, std::string::npos);
    json.replace(m, first_merge.size(), "\"nosuchtoken\",");
    expect_load_error(dir.file("unknown_merge.json", json), "unknown token 'nosuchtoken'");
    expect_load_error(dir.file("badb64.tiktoken", tiktoken_ranks({}) + "YW*i 256\n"),
                      "bad base64 'YW*i'");
    expect_load_error(dir.file("norank.tiktoken", tiktoken_ranks({}) + "YWI= x\n"), "bad rank");
    expect_load_error(dir.file("prose.txt", "hello there\n"), "bad base64");
    expect_load_error(dir.file("oneword.txt", "hello\n"), "neither a tiktoken ranks file nor JSON");
    expect_load_error(dir.file("missing_bytes.tiktoken", "YQ== 0\n"), "byte 0x00 has no token");
    expect_load_error(dir.file("empty.json", ""), "empty file");
    expect_load_error((dir.path / "absent.json").string(), "cannot open");
}

TEST(BpeBadFiles, UnsupportedPreTokenizerOrNormalizer) {
    TempDir dir;
    auto hf = nlohmann::json::parse(read_all(kHfJson));
    auto nfc = hf;
    nfc["normalizer"] = {{"type", "NFC"}};
    expect_load_error(dir.file("nfc.json", nfc.dump()), "normalizer 'NFC' is not supported");
    auto regex = hf;
    regex["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", "\\w+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    expect_load_error(dir.file("regex.json", regex.dump()), "not one agpt implements");
    auto metaspace = hf;
    metaspace["pre_tokenizer"] = {{"type", "Metaspace"}};
    expect_load_error(dir.file("metaspace.json", metaspace.dump()), "'Metaspace' is not supported");
}

}  // namespace
}  // namespace agpt
