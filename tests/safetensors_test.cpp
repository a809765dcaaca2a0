#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "agpt_st_XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    // A hand-made file: the given header JSON followed by data_bytes zero bytes.
    std::string craft(const std::string& name, const std::string& header, std::size_t data_bytes,
                      int64_t header_len_override = -1) const {
        const std::string p = path(name);
        std::ofstream out(p, std::ios::binary);
        const uint64_t n =
            header_len_override >= 0 ? static_cast<uint64_t>(header_len_override) : header.size();
        out.write(reinterpret_cast<const char*>(&n), 8);
        out << header;
        out << std::string(data_bytes, '\0');
        return p;
    }

    // EXPECT that loading p throws an Error whose message names the file and contains what.
    void expect_refused(const std::string& p, const std::string& what) const {
        try {
            SafetensorsFile f(p);
            ADD_FAILURE() << p << " was accepted";
        } catch (const Error& e) {
            const std::string msg = e.what();
            EXPECT_NE(msg.find(p), std::string::npos) << msg;
            EXPECT_NE(msg.find(what), std::string::npos) << msg;
            EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
        }
    }

    fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripAllDtypesShapesAndMetadata) {
    const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, 7.0f};
    const std::vector<double> f64 = {3.141592653589793};
    const std::vector<int32_t> i32 = {0, -1, 2147483647, -2147483647 - 1};
    const std::vector<int64_t> i64 = {int64_t{1} << 40, -5};
    SafetensorsWriter w;
    w.add("a.f32", {2, 3}, f32.data());
    w.add("b.f64", {1}, f64.data());
    w.add("c.i32", {2, 1, 2}, i32.data());
    w.add("d.i64", {2}, i64.data());
    w.add<float>("e.empty", {0, 4}, nullptr);
    w.set_metadata("dim", "64");
    w.set_metadata("note", "quotes \" and \\ survive");
    const std::string p = path("rt.safetensors");
    w.write(p);
    EXPECT_FALSE(fs::exists(p + ".tmp"));

    SafetensorsFile f(p);
    EXPECT_EQ(f.names(), (std::vector<std::string>{"a.f32", "b.f64", "c.i32", "d.i64", "e.empty"}));
    EXPECT_EQ(f.get<float>("a.f32"), f32);
    EXPECT_EQ(f.get<double>("b.f64"), f64);
    EXPECT_EQ(f.get<int32_t>("c.i32"), i32);
    EXPECT_EQ(f.get<int64_t>("d.i64"), i64);
    EXPECT_TRUE(f.get<float>("e.empty").empty());
    EXPECT_EQ(f.tensor("a.f32").shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(f.tensor("c.i32").dtype, SafetensorsDtype::I32);
    EXPECT_EQ(f.metadata().at("dim"), "64");
    EXPECT_EQ(f.metadata().at("note"), "quotes \" and \\ survive");

    std::vector<float> into(6);
    f.read_into("a.f32", into.data(), into.size());
    EXPECT_EQ(into, f32);
    EXPECT_THROW(f.read_into("a.f32", into.data(), 5), Error);
    EXPECT_THROW(f.get<double>("a.f32"), Error);  // wrong dtype
    EXPECT_THROW(f.tensor("missing"), Error);
    EXPECT_FALSE(f.contains("missing"));
}

TEST_F(SafetensorsTest, HeaderIsPaddedSoTensorsStayAligned) {
    const std::vector<double> x = {1.0, 2.0};
    SafetensorsWriter w;
    w.add("x", {2}, x.data());
    const std::string p = path("pad.safetensors");
    w.write(p);
    std::ifstream in(p, std::ios::binary);
    uint64_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(fs::file_size(p), 8 + n + 16);
}

TEST_F(SafetensorsTest, WriterRefusesDuplicateNames) {
    const float x = 1.0f;
    SafetensorsWriter w;
    w.add("x", {1}, &x);
    EXPECT_THROW(w.add("x", {1}, &x), Error);
    EXPECT_THROW(w.add("__metadata__", {1}, &x), Error);
}

TEST_F(SafetensorsTest, FailedWriteLeavesExistingFileUntouched) {
    const float x = 1.0f;
    SafetensorsWriter w;
    w.add("x", {1}, &x);
    const std::string good = path("good.safetensors");
    w.write(good);
    const auto before = fs::file_size(good);
    // The tmp file cannot be created inside a directory that does not exist.
    EXPECT_THROW(w.write(path("no_such_dir/out.safetensors")), Error);
    EXPECT_EQ(fs::file_size(good), before);
}

TEST_F(SafetensorsTest, RefusesTruncatedFile) {
    const std::vector<float> x(16, 1.0f);
    SafetensorsWriter w;
    w.add("x", {16}, x.data());
    const std::string p = path("trunc.safetensors");
    w.write(p);
    fs::resize_file(p, fs::file_size(p) - 4);
    expect_refused(p, "'x'");
    fs::resize_file(p, 5);
    expect_refused(p, "truncated");
}

TEST_F(SafetensorsTest, RefusesHeaderLengthLargerThanFile) {
    const std::string h = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    expect_refused(craft("hlen.safetensors", h, 4, 1000), "header length 1000 exceeds");
}

TEST_F(SafetensorsTest, RefusesOffsetsOutOfRange) {
    const std::string h = R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
    expect_refused(craft("range.safetensors", h, 8), "outside the data section");
    const std::string rev = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})";
    expect_refused(craft("rev.safetensors", rev, 8), "outside the data section");
}

TEST_F(SafetensorsTest, RefusesWrongDtypeSize) {
    // Three F64 need 24 bytes; 12 are declared (three F32 worth).
    const std::string h = R"({"x":{"dtype":"F64","shape":[3],"data_offsets":[0,12]}})";
    expect_refused(craft("size.safetensors", h, 12), "needs 24");
}

TEST_F(SafetensorsTest, RefusesOverlapsAndHoles) {
    const std::string overlap = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    expect_refused(craft("overlap.safetensors", overlap, 12), "overlaps");
    const std::string hole = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
    expect_refused(craft("hole.safetensors", hole, 8), "unused bytes");
    const std::string tail = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    expect_refused(craft("tail.safetensors", tail, 8), "cover 4");
}

TEST_F(SafetensorsTest, RefusesBadHeaders) {
    expect_refused(craft("json.safetensors", "{not json", 0), "not valid JSON");
    expect_refused(craft("arr.safetensors", "[1,2]", 0), "not a JSON object");
    const std::string bf16 = R"({"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})";
    expect_refused(craft("bf16.safetensors", bf16, 4), "unsupported dtype \"BF16\"");
    const std::string neg = R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
    expect_refused(craft("neg.safetensors", neg, 4), "negative");
    const std::string meta = R"({"__metadata__":{"k":1}})";
    expect_refused(craft("meta.safetensors", meta, 0), "__metadata__['k']");
    const std::string missing = R"({"x":{"dtype":"F32","shape":[1]}})";
    expect_refused(craft("missing.safetensors", missing, 4), "data_offsets");
    expect_refused(path("does_not_exist.safetensors"), "cannot open");
}

}  // namespace
}  // namespace agpt
