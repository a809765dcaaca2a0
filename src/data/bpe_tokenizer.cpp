#include "data/bpe_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <istream>
#include <ostream>
#include <sstream>
#include <tuple>

#include "core/error.h"
#include "data/bpe_byte_unicode.h"

namespace agpt {

namespace {

std::atomic<uint64_t> g_next_instance{1};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open file", path);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) fail("{}: read failed", path);
    return ss.str();
}

bool is_bos_text(std::string_view t) {
    return t == "<|bos|>" || t == "<|begin_of_text|>" || t == "<s>" || t == "<bos>";
}
bool is_eos_text(std::string_view t) {
    return t == "<|eos|>" || t == "<|end_of_text|>" || t == "<|endoftext|>" || t == "</s>" ||
           t == "<eos>";
}

// ---- tokenizer.json ----------------------------------------------------------------------------

using nlohmann::json;

std::string json_type_name(const json& j) {
    if (j.is_object() && j.contains("type") && j["type"].is_string())
        return j["type"].get<std::string>();
    return j.dump().substr(0, 60);
}

struct HfPreTokenizer {
    PretokenPattern pattern = PretokenPattern::gpt2;
    bool add_prefix_space = false;
};

// The two shapes byte-level BPE tokenizers use: ByteLevel(use_regex=true) alone (GPT-2), or
// Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)] (Llama 3, tiktoken conversions).
HfPreTokenizer parse_hf_pre_tokenizer(const json& pt, const std::string& source) {
    auto byte_level_flags = [&](const json& bl, bool want_regex) {
        HfPreTokenizer out;
        out.add_prefix_space = bl.value("add_prefix_space", false);
        if (bl.value("use_regex", true) != want_regex)
            fail("{}: pre_tokenizer ByteLevel with use_regex={} in this position is not supported",
                 source, !want_regex);
        return out;
    };
    if (pt.is_null())
        fail("{}: no pre_tokenizer; only byte-level BPE (a ByteLevel pre-tokenizer) is supported",
             source);
    const std::string type = json_type_name(pt);
    if (type == "ByteLevel") {
        HfPreTokenizer out = byte_level_flags(pt, true);
        out.pattern = PretokenPattern::gpt2;
        return out;
    }
    if (type == "Sequence" && pt.contains("pretokenizers") && pt["pretokenizers"].is_array() &&
        pt["pretokenizers"].size() == 2) {
        const json& split = pt["pretokenizers"][0];
        const json& bl = pt["pretokenizers"][1];
        if (json_type_name(split) == "Split" && json_type_name(bl) == "ByteLevel") {
            HfPreTokenizer out = byte_level_flags(bl, false);
            const json& pat = split.value("pattern", json::object());
            if (!pat.contains("Regex") || !pat["Regex"].is_string())
                fail("{}: pre_tokenizer Split needs a {{\"Regex\": ...}} pattern", source);
            if (split.value("behavior", std::string()) != "Isolated" ||
                split.value("invert", false))
                fail("{}: pre_tokenizer Split must have behavior Isolated and invert false",
                     source);
            const auto regex = pat["Regex"].get<std::string>();
            const auto pattern = pretoken_pattern_from_regex(regex);
            if (!pattern)
                fail(
                    "{}: pre-tokenizer regex is not one agpt implements (GPT-2, GPT-4/cl100k, "
                    "Llama 3): {}",
                    source, regex);
            out.pattern = *pattern;
            return out;
        }
    }
    fail(
        "{}: pre_tokenizer '{}' is not supported; byte-level BPE needs ByteLevel or "
        "Sequence[Split(regex), ByteLevel]",
        source, type);
}

}  // namespace

// ---- loading ------------------------------------------------------------------------------------

BpeTokenizer BpeTokenizer::load(const std::string& path, const BpeTiktokenOptions& tiktoken) {
    const std::string text = read_file(path);
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) fail("{}: empty file, not a tokenizer", path);
    if (text[first] == '{') return from_hf_json(text, path);
    return from_tiktoken(text, path, tiktoken);
}

BpeTokenizer BpeTokenizer::load_hf_json(const std::string& path) {
    return from_hf_json(read_file(path), path);
}

BpeTokenizer BpeTokenizer::load_tiktoken(const std::string& path,
                                         const BpeTiktokenOptions& options) {
    return from_tiktoken(read_file(path), path, options);
}

BpeTokenizer BpeTokenizer::from_hf_json(std::string_view text, const std::string& source) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        fail("{}: not valid JSON (byte {}): not a tokenizer.json", source, e.byte);
    }
    try {
        if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
            fail("{}: not a tokenizer.json: no \"model\" object", source);
        const json& model = j["model"];
        const std::string type = model.value("type", model.contains("merges") ? "BPE" : "");
        if (type != "BPE")
            fail("{}: model type '{}' is not supported (only byte-level BPE)", source, type);
        if (model.value("byte_fallback", false))
            fail(
                "{}: BPE with byte_fallback (SentencePiece style) is not supported, only "
                "byte-level",
                source);
        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
            if (model.contains(key) && !model[key].is_null() && model[key] != "")
                fail("{}: model.{} is not supported", source, key);
        }
        if (model.contains("dropout") && !model["dropout"].is_null())
            fail("{}: model.dropout is not supported (encodings would be random)", source);
        if (j.contains("normalizer") && !j["normalizer"].is_null())
            fail("{}: normalizer '{}' is not supported (byte-level BPE encodes the raw bytes)",
                 source, json_type_name(j["normalizer"]));

        BpeTokenizer tok;
        const HfPreTokenizer pre = parse_hf_pre_tokenizer(j.value("pre_tokenizer", json()), source);
        tok.pattern_ = pre.pattern;
        tok.add_prefix_space_ = pre.add_prefix_space;
        tok.ignore_merges_ = model.value("ignore_merges", false);

        if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
            for (const json& a : j["added_tokens"]) {
                if (!a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
                    !a["content"].is_string())
                    fail("{}: added_tokens entry without an integer id and a content string",
                         source);
                tok.specials_.push_back({a["content"].get<std::string>(), a["id"].get<int32_t>()});
            }
        }
        auto is_added = [&](const std::string& content) {
            return std::any_of(tok.specials_.begin(), tok.specials_.end(),
                               [&](const BpeSpecialToken& s) { return s.text == content; });
        };

        if (!model.contains("vocab") || !model["vocab"].is_object())
            fail("{}: model.vocab is missing or not an object", source);
        std::unordered_map<std::string, int32_t> hf_to_id;
        for (const auto& [token, id_json] : model["vocab"].items()) {
            if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
                id_json.get<int64_t>() > INT32_MAX)
                fail("{}: model.vocab['{}'] is not a valid id", source, token);
            const auto id = id_json.get<int32_t>();
            hf_to_id.emplace(token, id);
            if (static_cast<std::size_t>(id) >= tok.id_to_bytes_.size()) {
                tok.id_to_bytes_.resize(static_cast<std::size_t>(id) + 1);
                tok.is_bpe_token_.resize(static_cast<std::size_t>(id) + 1, 0);
            }
            if (tok.is_bpe_token_[id]) fail("{}: model.vocab gives id {} twice", source, id);
            auto bytes = bpe_unicode_to_bytes(token);
            if (!bytes) {
                // Tokenizers that list their special tokens in the vocabulary too write them as
                // plain text, which need not be byte-level.
                if (is_added(token)) continue;
                fail("{}: model.vocab token '{}' (id {}) is not byte-level", source, token, id);
            }
            tok.id_to_bytes_[id] = std::move(*bytes);
            tok.is_bpe_token_[id] = 1;
        }

        if (!model.contains("merges") || !model["merges"].is_array())
            fail("{}: model.merges is missing or not a list", source);
        const json& merges = model["merges"];
        tok.merges_.reserve(merges.size());
        auto id_of = [&](const std::string& token, std::size_t i) {
            auto it = hf_to_id.find(token);
            if (it == hf_to_id.end())
                fail("{}: merge {} names unknown token '{}'", source, i, token);
            return it->second;
        };
        for (std::size_t i = 0; i < merges.size(); i++) {
            const json& m = merges[i];
            std::string left, right;
            if (m.is_string()) {
                const auto s = m.get<std::string>();
                const auto space = s.find(' ');
                if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
                    fail("{}: merge {} '{}' is not two tokens separated by a space", source, i, s);
                left = s.substr(0, space);
                right = s.substr(space + 1);
            } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                left = m[0].get<std::string>();
                right = m[1].get<std::string>();
            } else {
                fail("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", source, i);
            }
            const int32_t a = id_of(left, i);
            const int32_t b = id_of(right, i);
            if (!hf_to_id.contains(left + right))
                fail("{}: merge {} makes '{}', which is not in model.vocab", source, i,
                     left + right);
            tok.merges_.emplace_back(a, b);
            tok.merge_ranks_.push_back(static_cast<int32_t>(i));
        }
        tok.finish(source);
        return tok;
    } catch (const json::exception& e) {
        fail("{}: unexpected tokenizer.json structure ({})", source, e.what());
    }
}

namespace {

int base64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

std::optional<std::string> base64_decode(std::string_view s) {
    if (s.empty() || s.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(s.size() / 4 * 3);
    for (std::size_t i = 0; i < s.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const unsigned char c = s[i + k];
            if (c == '=' && i + 4 == s.size() && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad > 0) return std::nullopt;  // data after padding
                v[k] = base64_value(c);
                if (v[k] < 0) return std::nullopt;
            }
        }
        const uint32_t n = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) |
                           uint32_t(v[3]);
        out.push_back(static_cast<char>(n >> 16));
        if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xFF));
        if (pad < 1) out.push_back(static_cast<char>(n & 0xFF));
    }
    return out;
}

}  // namespace

BpeTokenizer BpeTokenizer::from_tiktoken(std::string_view text, const std::string& source,
                                         const BpeTiktokenOptions& options) {
    BpeTokenizer tok;
    tok.pattern_ = options.pattern;
    tok.ignore_merges_ = true;  // tiktoken looks a whole piece up before merging
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        line_no++;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        const auto space = line.find(' ');
        if (space == std::string_view::npos)
            fail(
                "{}:{}: expected '<base64 token> <rank>' (the file is neither a tiktoken ranks "
                "file nor JSON)",
                source, line_no);
        const std::string_view b64 = line.substr(0, space);
        const std::string_view rank_text = line.substr(space + 1);
        auto bytes = base64_decode(b64);
        if (!bytes) fail("{}:{}: bad base64 '{}'", source, line_no, b64);
        int32_t rank = -1;
        const auto [end, ec] =
            std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
        if (ec != std::errc() || end != rank_text.data() + rank_text.size() || rank < 0)
            fail("{}:{}: bad rank '{}'", source, line_no, rank_text);
        if (static_cast<std::size_t>(rank) >= tok.id_to_bytes_.size()) {
            tok.id_to_bytes_.resize(static_cast<std::size_t>(rank) + 1);
            tok.is_bpe_token_.resize(static_cast<std::size_t>(rank) + 1, 0);
        }
        if (tok.is_bpe_token_[rank]) fail("{}:{}: rank {} appears twice", source, line_no, rank);
        tok.id_to_bytes_[rank] = std::move(*bytes);
        tok.is_bpe_token_[rank] = 1;
    }
    if (tok.id_to_bytes_.empty()) fail("{}: no tokens in the tiktoken ranks file", source);

    // tiktoken merges the adjacent pair whose concatenation has the lowest rank. Listing every
    // split (a, b) of every token t, with rank(t), gives a merge table that does exactly that.
    std::unordered_map<std::string_view, int32_t> ids;
    for (std::size_t id = 0; id < tok.id_to_bytes_.size(); id++) {
        if (!tok.is_bpe_token_[id]) continue;
        if (!ids.emplace(tok.id_to_bytes_[id], static_cast<int32_t>(id)).second)
            fail("{}: token of rank {} appears twice", source, id);
    }
    struct Split {
        int32_t rank, left, right;
    };
    std::vector<Split> splits;
    for (std::size_t id = 0; id < tok.id_to_bytes_.size(); id++) {
        const std::string_view t = tok.id_to_bytes_[id];
        if (!tok.is_bpe_token_[id] || t.size() < 2) continue;
        for (std::size_t k = 1; k < t.size(); k++) {
            auto l = ids.find(t.substr(0, k));
            if (l == ids.end()) continue;
            auto r = ids.find(t.substr(k));
            if (r == ids.end()) continue;
            splits.push_back({static_cast<int32_t>(id), l->second, r->second});
        }
    }
    std::sort(splits.begin(), splits.end(), [](const Split& x, const Split& y) {
        return std::tie(x.rank, x.left, x.right) < std::tie(y.rank, y.left, y.right);
    });
    for (const Split& s : splits) {
        tok.merges_.emplace_back(s.left, s.right);
        tok.merge_ranks_.push_back(s.rank);
    }
    int32_t next_id = static_cast<int32_t>(tok.id_to_bytes_.size());
    for (const BpeSpecialToken& s : options.specials) {
        const int32_t id = s.id >= 0 ? s.id : next_id;
        tok.specials_.push_back({s.text, id});
        next_id = std::max(next_id, id + 1);
    }
    tok.finish(source);
    return tok;
}

void BpeTokenizer::finish(const std::string& source) {
    std::size_t size = id_to_bytes_.size();
    for (const BpeSpecialToken& s : specials_) {
        if (s.id < 0) fail("{}: special token '{}' has a negative id", source, s.text);
        if (s.text.empty()) fail("{}: a special token has empty text", source);
        size = std::max(size, static_cast<std::size_t>(s.id) + 1);
    }
    id_to_bytes_.resize(size);
    is_bpe_token_.resize(size, 0);
    special_of_id_.assign(size, -1);
    for (std::size_t i = 0; i < specials_.size(); i++) {
        const BpeSpecialToken& s = specials_[i];
        if (special_of_id_[s.id] >= 0)
            fail("{}: special tokens '{}' and '{}' share id {}", source,
                 specials_[special_of_id_[s.id]].text, s.text, s.id);
        for (std::size_t k = 0; k < i; k++) {
            if (specials_[k].text == s.text)
                fail("{}: special token '{}' is listed twice", source, s.text);
        }
        special_of_id_[s.id] = static_cast<int32_t>(i);
    }

    bytes_to_id_.clear();
    bytes_to_id_.reserve(size);
    for (std::size_t id = 0; id < size; id++) {
        if (!is_bpe_token_[id]) continue;
        const auto [it, fresh] = bytes_to_id_.emplace(id_to_bytes_[id], static_cast<int32_t>(id));
        if (!fresh) {
            // A special token kept in the vocabulary under its own text may repeat a BPE token.
            if (special_of_id_[id] >= 0) continue;
            if (special_of_id_[it->second] >= 0) {
                it->second = static_cast<int32_t>(id);
                continue;
            }
            fail("{}: ids {} and {} are the same bytes", source, it->second, id);
        }
    }
    for (int b = 0; b < 256; b++) {
        auto it = bytes_to_id_.find(std::string_view(reinterpret_cast<const char*>(&b), 1));
        if (it == bytes_to_id_.end())
            fail("{}: byte 0x{:02x} has no token; a byte-level BPE needs all 256 bytes", source, b);
        byte_to_id_[b] = it->second;
    }

    merge_table_.reset(merges_.size());
    std::string joined;
    for (std::size_t i = 0; i < merges_.size(); i++) {
        const auto [a, b] = merges_[i];
        if (a < 0 || b < 0 || static_cast<std::size_t>(a) >= size ||
            static_cast<std::size_t>(b) >= size || !is_bpe_token_[a] || !is_bpe_token_[b])
            fail("{}: merge {} names an unknown token id", source, i);
        joined = id_to_bytes_[a];
        joined += id_to_bytes_[b];
        auto it = bytes_to_id_.find(joined);
        if (it == bytes_to_id_.end())
            fail("{}: merge {} makes a token that is not in the vocabulary", source, i);
        merge_table_.assign(a, b, {merge_ranks_[i], it->second});
    }

    specials_longest_.resize(specials_.size());
    for (std::size_t i = 0; i < specials_.size(); i++)
        specials_longest_[i] = static_cast<int32_t>(i);
    std::stable_sort(specials_longest_.begin(), specials_longest_.end(), [&](int32_t x, int32_t y) {
        return specials_[x].text.size() > specials_[y].text.size();
    });
    special_first_byte_.fill(0);
    bos_id_.reset();
    eos_id_.reset();
    for (const BpeSpecialToken& s : specials_) {
        special_first_byte_[static_cast<unsigned char>(s.text[0])] = 1;
        if (!bos_id_ && is_bos_text(s.text)) bos_id_ = s.id;
        if (!eos_id_ && is_eos_text(s.text)) eos_id_ = s.id;
    }
    instance_ = g_next_instance.fetch_add(1);
}

// ---- saving -------------------------------------------------------------------------------------

std::string BpeTokenizer::to_hf_json() const {
    using ojson = nlohmann::ordered_json;
    ojson j;
    j["version"] = "1.0";
    j["truncation"] = nullptr;
    j["padding"] = nullptr;
    ojson added = ojson::array();
    std::vector<BpeSpecialToken> by_id = specials_;
    std::sort(by_id.begin(), by_id.end(),
              [](const BpeSpecialToken& x, const BpeSpecialToken& y) { return x.id < y.id; });
    for (const BpeSpecialToken& s : by_id) {
        added.push_back({{"id", s.id},
                         {"content", s.text},
                         {"single_word", false},
                         {"lstrip", false},
                         {"rstrip", false},
                         {"normalized", false},
                         {"special", true}});
    }
    j["added_tokens"] = added;
    j["normalizer"] = nullptr;
    const bool gpt2 = pattern_ == PretokenPattern::gpt2;
    ojson byte_level = {{"type", "ByteLevel"},
                        {"add_prefix_space", add_prefix_space_},
                        {"trim_offsets", true},
                        {"use_regex", gpt2}};
    if (gpt2) {
        j["pre_tokenizer"] = byte_level;
    } else {
        ojson split = {{"type", "Split"},
                       {"pattern", {{"Regex", std::string(pretoken_regex(pattern_))}}},
                       {"behavior", "Isolated"},
                       {"invert", false}};
        j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {split, byte_level}}};
    }
    j["post_processor"] = nullptr;
    j["decoder"] = {{"type", "ByteLevel"},
                    {"add_prefix_space", true},
                    {"trim_offsets", true},
                    {"use_regex", true}};
    ojson model;
    model["type"] = "BPE";
    model["dropout"] = nullptr;
    model["unk_token"] = nullptr;
    model["continuing_subword_prefix"] = nullptr;
    model["end_of_word_suffix"] = nullptr;
    model["fuse_unk"] = false;
    model["byte_fallback"] = false;
    model["ignore_merges"] = ignore_merges_;
    ojson vocab = ojson::object();
    // Appended straight to the ordered map: its operator[] searches linearly, quadratic for a
    // 100k vocabulary. Keys are distinct because the tokens' bytes are.
    auto& entries = vocab.get_ref<ojson::object_t&>();
    for (std::size_t id = 0; id < id_to_bytes_.size(); id++) {
        if (is_bpe_token_[id]) entries.emplace_back(bpe_bytes_to_unicode(id_to_bytes_[id]), id);
    }
    model["vocab"] = std::move(vocab);
    // "a b" strings rather than pairs: every tokenizers release reads them, and byte-level
    // tokens never hold a literal space.
    ojson merges = ojson::array();
    for (const auto& [a, b] : merges_)
        merges.push_back(bpe_bytes_to_unicode(id_to_bytes_[a]) + " " +
                         bpe_bytes_to_unicode(id_to_bytes_[b]));
    model["merges"] = std::move(merges);
    j["model"] = std::move(model);
    return j.dump(2);
}

void BpeTokenizer::save_hf_json(const std::string& path) const {
    std::string text;
    try {
        text = to_hf_json();
    } catch (const nlohmann::json::exception& e) {
        fail("{}: cannot write the tokenizer as JSON ({})", path, e.what());
    }
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) fail("{}: cannot create file", tmp);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        out.put('\n');
        if (!out.flush()) {
            std::error_code ignored;
            std::filesystem::remove(tmp, ignored);
            fail("{}: write failed", tmp);
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("{}: cannot rename to {}: {}", tmp, path, ec.message());
}

// ---- encoding -----------------------------------------------------------------------------------

namespace {

// Encoded pieces, per thread: text repeats its words, and a hit costs one hash lookup instead of
// a BPE run. Bounded by clearing, which is cheaper than an LRU and loses little.
struct PieceCache {
    uint64_t owner = 0;
    std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, BpeStringHash, std::equal_to<>>
        spans;  // piece -> (offset, count) in ids
    std::vector<int32_t> ids;

    static constexpr std::size_t kMaxPieces = std::size_t{1} << 18;
    static constexpr std::size_t kMaxPieceBytes = 256;

    void reset(uint64_t new_owner) {
        owner = new_owner;
        spans.clear();
        ids.clear();
    }
};

thread_local PieceCache t_cache;

struct Symbol {
    int32_t id;  // -1: merged into its left neighbour
    int32_t prev;
    int32_t next;  // -1: last
};

struct Candidate {
    int32_t rank;
    int32_t pos;  // the left symbol
    int32_t left, right, merged;
};

// Min-heap order: lowest rank, then leftmost.
struct CandidateAfter {
    bool operator()(const Candidate& x, const Candidate& y) const {
        return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
    }
};

thread_local std::vector<Symbol> t_symbols;
thread_local std::vector<Candidate> t_heap;

}  // namespace

void BpeTokenizer::clear_thread_cache() {
    t_cache.reset(0);
}

void BpeTokenizer::merge_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (ignore_merges_) {
        auto it = bytes_to_id_.find(piece);
        if (it != bytes_to_id_.end() && special_of_id_[it->second] < 0) {
            out.push_back(it->second);
            return;
        }
    }
    const auto n = static_cast<int32_t>(piece.size());
    std::vector<Symbol>& sym = t_symbols;
    std::vector<Candidate>& heap = t_heap;
    sym.resize(piece.size());
    heap.clear();
    for (int32_t i = 0; i < n; i++)
        sym[i] = {byte_to_id_[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
    auto consider = [&](int32_t pos) {
        const int32_t next = sym[pos].next;
        if (next < 0) return;
        const BpeMerge m = merge_table_.find(sym[pos].id, sym[next].id);
        if (m.rank < 0) return;
        heap.push_back({m.rank, pos, sym[pos].id, sym[next].id, m.id});
        std::push_heap(heap.begin(), heap.end(), CandidateAfter{});
    };
    for (int32_t i = 0; i + 1 < n; i++) consider(i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), CandidateAfter{});
        const Candidate c = heap.back();
        heap.pop_back();
        // Stale when either side has merged since: the pair at pos is no longer (left, right).
        const int32_t r = sym[c.pos].next;
        if (sym[c.pos].id != c.left || r < 0 || sym[r].id != c.right) continue;
        sym[c.pos].id = c.merged;
        sym[r].id = -1;
        const int32_t after = sym[r].next;
        sym[c.pos].next = after;
        if (after >= 0) sym[after].prev = c.pos;
        if (sym[c.pos].prev >= 0) consider(sym[c.pos].prev);
        consider(c.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() == 1) {
        out.push_back(byte_to_id_[static_cast<unsigned char>(piece[0])]);
        return;
    }
    PieceCache& cache = t_cache;
    if (cache.owner != instance_) cache.reset(instance_);
    if (auto it = cache.spans.find(piece); it != cache.spans.end()) {
        const int32_t* ids = cache.ids.data() + it->second.first;
        out.insert(out.end(), ids, ids + it->second.second);
        return;
    }
    const std::size_t start = out.size();
    merge_piece(piece, out);
    if (piece.size() > PieceCache::kMaxPieceBytes) return;
    if (cache.spans.size() >= PieceCache::kMaxPieces) cache.reset(instance_);
    const auto offset = static_cast<uint32_t>(cache.ids.size());
    cache.ids.insert(cache.ids.end(), out.begin() + static_cast<long>(start), out.end());
    cache.spans.emplace(std::string(piece),
                        std::pair<uint32_t, uint32_t>(offset, uint32_t(out.size() - start)));
}

void BpeTokenizer::encode_ordinary(std::string_view text, bool at_start,
                                   std::vector<int32_t>& out) const {
    if (text.empty()) return;
    if (add_prefix_space_ && at_start && text[0] != ' ') {
        std::string prefixed;
        prefixed.reserve(text.size() + 1);
        prefixed.push_back(' ');
        prefixed.append(text);
        for_each_pretoken(prefixed, pattern_,
                          [&](std::string_view piece) { encode_piece(piece, out); });
        return;
    }
    for_each_pretoken(text, pattern_, [&](std::string_view piece) { encode_piece(piece, out); });
}

void BpeTokenizer::encode_text(std::string_view text, bool with_specials, bool at_start,
                               std::vector<int32_t>& out) const {
    if (!with_specials) {
        encode_ordinary(text, at_start, out);
        return;
    }
    // Hugging Face applies the pre-tokenizer (and add_prefix_space) to each stretch between
    // special tokens.
    std::size_t segment = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        if (!special_first_byte_[static_cast<unsigned char>(text[i])]) {
            i++;
            continue;
        }
        const BpeSpecialToken* found = nullptr;
        for (int32_t k : specials_longest_) {
            if (text.substr(i).starts_with(specials_[k].text)) {
                found = &specials_[k];
                break;
            }
        }
        if (!found) {
            i++;
            continue;
        }
        encode_ordinary(text.substr(segment, i - segment), at_start || segment > 0, out);
        out.push_back(found->id);
        i += found->text.size();
        segment = i;
    }
    encode_ordinary(text.substr(segment), at_start || segment > 0, out);
}

void BpeTokenizer::encode_append(std::string_view text, std::vector<int32_t>& out) const {
    encode_ordinary(text, true, out);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 1);
    encode_ordinary(text, true, out);
    return out;
}

std::vector<int32_t> BpeTokenizer::encode_with_specials(std::string_view text) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 1);
    encode_text(text, true, true, out);
    return out;
}

void BpeTokenizer::encode_stream(std::istream& in,
                                 const std::function<void(std::span<const int32_t>)>& sink,
                                 bool with_specials, std::size_t chunk_bytes) const {
    if (chunk_bytes == 0) fail("tokenizer: chunk_bytes must be positive");
    std::string buffer;
    std::vector<char> block(chunk_bytes);
    std::vector<int32_t> ids;
    bool at_start = true;
    while (true) {
        // Cuts before here were looked for already; new ones need the new bytes.
        const std::size_t old_size = buffer.size();
        in.read(block.data(), static_cast<std::streamsize>(block.size()));
        buffer.append(block.data(), static_cast<std::size_t>(in.gcount()));
        if (in.bad()) fail("tokenizer: read error on the input stream");
        if (!in) break;
        const std::size_t cut = pretoken_safe_cut(buffer, old_size);
        if (cut == 0) continue;
        encode_text(std::string_view(buffer).substr(0, cut), with_specials, at_start, ids);
        at_start = false;
        buffer.erase(0, cut);
        sink(ids);
        ids.clear();
    }
    encode_text(buffer, with_specials, at_start, ids);
    sink(ids);
}

void BpeTokenizer::decode_stream(std::istream& in, std::ostream& out, const std::string& source,
                                 bool skip_specials) const {
    std::vector<int32_t> ids;
    auto flush = [&] {
        const std::string bytes = decode(ids, skip_specials);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        ids.clear();
    };
    std::string word;
    while (in >> word) {
        int32_t id = -1;
        const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
        if (ec != std::errc() || end != word.data() + word.size())
            fail("{}: '{}' is not a token id", source, word);
        ids.push_back(id);
        if (ids.size() >= (std::size_t{1} << 16)) flush();
    }
    if (in.bad()) fail("{}: read error", source);
    flush();
    if (!out.flush()) fail("tokenizer: write error");
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_specials) const {
    std::string out;
    out.reserve(ids.size() * 4);
    for (const int32_t id : ids) {
        if (id < 0 || id >= vocab_size())
            fail("tokenizer: token id {} is outside the vocabulary [0, {})", id, vocab_size());
        if (const int32_t s = special_of_id_[id]; s >= 0) {
            if (!skip_specials) out += specials_[s].text;
        } else if (is_bpe_token_[id]) {
            out += id_to_bytes_[id];
        } else {
            fail("tokenizer: token id {} is not used by this vocabulary", id);
        }
    }
    return out;
}

std::optional<int32_t> BpeTokenizer::special_id(std::string_view text) const {
    for (const BpeSpecialToken& s : specials_) {
        if (s.text == text) return s.id;
    }
    return std::nullopt;
}

std::optional<std::string> BpeTokenizer::token_bytes(int32_t id) const {
    if (id < 0 || id >= vocab_size() || !is_bpe_token_[id]) return std::nullopt;
    return id_to_bytes_[id];
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view bytes) const {
    auto it = bytes_to_id_.find(bytes);
    if (it == bytes_to_id_.end()) return std::nullopt;
    return it->second;
}

}  // namespace agpt
