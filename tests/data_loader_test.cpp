#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "data/text_dataset.h"
#include "data/token_shards.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_loader_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// Token value = position, so a window is identified by its first token.
std::vector<int32_t> iota_tokens(int n) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; i++) t[i] = i;
    return t;
}

std::vector<int32_t> epoch_starts(WindowLoader& l, int T) {
    std::vector<int32_t> in(T), tg(T), starts;
    for (long i = 0; i < l.rank_windows(); i++) {
        l.next_batch(1, in.data(), tg.data());
        starts.push_back(in[0]);
    }
    return starts;
}

TEST(DataLoader, RanksAreDisjointAndCoverEveryWindowEachEpoch) {
    const auto tokens = iota_tokens(1003);  // 100 windows of T = 10 (a ragged tail)
    for (int world : {1, 2, 3, 4}) {
        for (int epoch = 0; epoch < 2; epoch++) {
            std::multiset<int32_t> all;
            for (int r = 0; r < world; r++) {
                WindowLoader l(tokens, 10, 7, r, world);
                if (epoch == 1) epoch_starts(l, 10);  // skip to the second epoch
                for (int32_t s : epoch_starts(l, 10)) all.insert(s);
            }
            ASSERT_EQ(all.size(), 100u) << world;
            EXPECT_EQ(std::set<int32_t>(all.begin(), all.end()).size(), 100u) << world;
        }
    }
}

TEST(DataLoader, SeedFixesTheOrderAndEpochsDiffer) {
    const auto tokens = iota_tokens(2001);
    WindowLoader a(tokens, 10, 1), b(tokens, 10, 1), c(tokens, 10, 2);
    const auto ea = epoch_starts(a, 10), eb = epoch_starts(b, 10), ec = epoch_starts(c, 10);
    EXPECT_EQ(ea, eb);
    EXPECT_NE(ea, ec);
    EXPECT_NE(epoch_starts(a, 10), ea);  // the next epoch is another permutation
}

TEST(DataLoader, ResumeAtAnyStepEqualsNoInterruption) {
    const auto tokens = iota_tokens(1001);
    for (int world : {1, 3}) {
        WindowLoader full(tokens, 10, 5, world - 1, world);
        std::vector<int32_t> in(30), tg(30), expected;
        for (int step = 0; step < 25; step++) {  // crosses epochs
            full.next_batch(3, in.data(), tg.data());
            expected.insert(expected.end(), in.begin(), in.end());
        }
        for (int cut : {0, 1, 7, 11, 24}) {
            WindowLoader first(tokens, 10, 5, world - 1, world);
            std::vector<int32_t> got;
            for (int step = 0; step < cut; step++) {
                first.next_batch(3, in.data(), tg.data());
                got.insert(got.end(), in.begin(), in.end());
            }
            WindowLoader resumed(tokens, 10, 5, world - 1, world);
            resumed.restore(first.epoch(), first.position());
            for (int step = cut; step < 25; step++) {
                resumed.next_batch(3, in.data(), tg.data());
                got.insert(got.end(), in.begin(), in.end());
            }
            EXPECT_EQ(got, expected) << "world " << world << " cut " << cut;
        }
    }
}

TEST(DataLoader, WindowsNeverStraddleSpans) {
    // Two spans of 25 and 31 tokens, T = 10: 2 + 3 windows.
    std::vector<std::vector<int32_t>> spans = {iota_tokens(25), iota_tokens(31)};
    for (auto& t : spans[1]) t += 1000;
    WindowLoader l(
        {25, 31},
        [&](std::size_t s, std::size_t b, std::size_t n, int32_t* out) {
            std::copy_n(spans[s].data() + b, n, out);
        },
        10, 3);
    EXPECT_EQ(l.num_windows(), 5);
    std::vector<int32_t> in(10), tg(10);
    for (int i = 0; i < 5; i++) {
        l.next_batch(1, in.data(), tg.data());
        EXPECT_EQ(tg[9], in[9] + 1);  // contiguous within one span
    }
    EXPECT_THROW(WindowLoader(iota_tokens(5), 10, 1), Error);
    EXPECT_THROW(WindowLoader(iota_tokens(30), 10, 1, 3, 2), Error);  // rank >= world
}

TEST(TokenShards, RoundTripInBothWidths) {
    const fs::path d = temp_dir("roundtrip");
    const std::vector<uint32_t> small = {0, 1, 65535, 42};
    write_token_shard((d / "a.bin").string(), small, 65535);
    const TokenShard a((d / "a.bin").string());
    EXPECT_FALSE(a.wide());
    ASSERT_EQ(a.size(), 4u);
    EXPECT_EQ(a.at(2), 65535u);
    EXPECT_EQ(fs::file_size(d / "a.bin"), 1024u + 8u);

    const std::vector<uint32_t> big = {70000, 3, 256127};
    write_token_shard((d / "b.bin").string(), big, 256127);
    const TokenShard b((d / "b.bin").string());
    EXPECT_TRUE(b.wide());
    std::vector<int32_t> out(3);
    b.copy(0, 3, out.data());
    EXPECT_EQ(out, (std::vector<int32_t>{70000, 3, 256127}));
    EXPECT_EQ(list_token_shards(d.string()),
              (std::vector<std::string>{(d / "a.bin").string(), (d / "b.bin").string()}));
    EXPECT_THROW(write_token_shard((d / "c.bin").string(), {70000}, 65535), Error);
    EXPECT_FALSE(fs::exists(d / "c.bin"));
}

std::string error_of(const std::string& path) {
    try {
        TokenShard s(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(TokenShards, TruncatedWrongMagicAndWrongSizeAreRefusedNamingTheFile) {
    const fs::path d = temp_dir("bad");
    const std::string p = (d / "s.bin").string();
    write_token_shard(p, {1, 2, 3, 4, 5}, 100);
    fs::resize_file(p, 1024 + 6);  // one token short
    std::string e = error_of(p);
    EXPECT_NE(e.find(p), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;
    fs::resize_file(p, 100);
    EXPECT_NE(error_of(p).find("shorter than"), std::string::npos);
    {
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        std::vector<int32_t> header(256, 0);
        header[0] = 12345;
        f.write(reinterpret_cast<const char*>(header.data()), 1024);
    }
    e = error_of(p);
    EXPECT_NE(e.find("not a token shard"), std::string::npos) << e;
    EXPECT_NE(error_of((d / "missing.bin").string()).find("cannot open"), std::string::npos);
}

}  // namespace
}  // namespace agpt
