#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "train/tensorboard.h"

namespace agpt {
namespace {

TEST(TensorBoard, Crc32cMatchesTheStandardCheckValue) {
    // The CRC-32C check value from RFC 3720 / the Castagnoli catalogue.
    EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
    const unsigned char zeros[32] = {};
    EXPECT_EQ(crc32c(zeros, 32), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
}

TEST(TensorBoard, RecordsAreFramedWithValidChecksums) {
    const auto dir = std::filesystem::temp_directory_path() / "agpt_tb_test";
    std::filesystem::remove_all(dir);
    std::string path;
    {
        TensorBoardWriter w(dir.string());
        w.scalars(3, {{"loss", 2.5}, {"lr", 1e-3}});
        path = w.path();
    }
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t pos = 0;
    int records = 0;
    while (pos < bytes.size()) {
        ASSERT_LE(pos + 12, bytes.size());
        uint64_t len = 0;
        uint32_t len_crc = 0, data_crc = 0;
        std::memcpy(&len, bytes.data() + pos, 8);
        std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
        EXPECT_EQ(len_crc, masked_crc32c(bytes.data() + pos, 8));
        ASSERT_LE(pos + 12 + len + 4, bytes.size());
        std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
        EXPECT_EQ(data_crc, masked_crc32c(bytes.data() + pos + 12, len));
        pos += 12 + len + 4;
        records++;
    }
    EXPECT_EQ(records, 2);  // the version record and one scalar event
    EXPECT_NE(bytes.find("brain.Event:2"), std::string::npos);
    EXPECT_NE(bytes.find("loss"), std::string::npos);
}

}  // namespace
}  // namespace agpt
