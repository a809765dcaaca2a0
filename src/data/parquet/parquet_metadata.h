#pragma once
// Parquet's file metadata (the Thrift footer) and page headers, decoded into plain structs.
// Only what a reader of string columns and `agpt data inspect` need is kept; everything else
// (statistics, indexes, bloom filters, encryption, newer fields) is skipped on the wire.
//
// Enumerations hold the raw int32 from the file, so an unknown codec or encoding is still
// printable (`encoding_name(Encoding{42})` is "ENCODING(42)") and refused only when a page
// actually needs it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agpt::parquet {

enum class PhysicalType : int32_t {
    Boolean = 0,
    Int32 = 1,
    Int64 = 2,
    Int96 = 3,
    Float = 4,
    Double = 5,
    ByteArray = 6,
    FixedLenByteArray = 7,
};

enum class Codec : int32_t {
    Uncompressed = 0,
    Snappy = 1,
    Gzip = 2,
    Lzo = 3,
    Brotli = 4,
    Lz4 = 5,
    Zstd = 6,
    Lz4Raw = 7,
};

enum class Encoding : int32_t {
    Plain = 0,
    PlainDictionary = 2,
    Rle = 3,
    BitPacked = 4,
    DeltaBinaryPacked = 5,
    DeltaLengthByteArray = 6,
    DeltaByteArray = 7,
    RleDictionary = 8,
    ByteStreamSplit = 9,
};

enum class PageType : int32_t {
    DataPage = 0,
    IndexPage = 1,
    DictionaryPage = 2,
    DataPageV2 = 3,
};

enum class Repetition : int32_t { Required = 0, Optional = 1, Repeated = 2 };

std::string physical_type_name(PhysicalType t);
std::string codec_name(Codec c);
std::string encoding_name(Encoding e);
std::string page_type_name(PageType t);
std::string repetition_name(Repetition r);
// A name from a file, safe to put in a one-line message: control bytes escaped, cut at max_bytes.
std::string printable(std::string_view s, size_t max_bytes = 80);

// One node of the schema tree as the footer lists it (depth first, root first).
struct SchemaElement {
    std::string name;
    bool has_type = false;  // false for group nodes
    PhysicalType type = PhysicalType::Boolean;
    int32_t type_length = 0;
    bool has_repetition = false;
    Repetition repetition = Repetition::Required;
    int32_t num_children = 0;
    int32_t converted_type = -1;  // -1: none
    int32_t logical_type = 0;     // the LogicalType union's field id; 0: none
};

// A leaf column: what its values are and how deep its levels go.
struct ColumnDescriptor {
    std::string path;  // dotted path from the root, e.g. "text" or "meta.url"
    size_t schema_index = 0;
    PhysicalType type = PhysicalType::Boolean;
    int max_definition_level = 0;
    int max_repetition_level = 0;
    std::string logical;  // "STRING", "INT(64,true)"-like summary, or ""
    Repetition repetition = Repetition::Required;
};

struct ColumnChunkMeta {
    PhysicalType type = PhysicalType::Boolean;
    Codec codec = Codec::Uncompressed;
    // Bit e set: encoding e is listed; encodings above 31 set bit 31 (unknown_encodings).
    uint32_t encodings = 0;
    bool unknown_encodings = false;
    bool has_dictionary_page_offset = false;
    bool in_other_file = false;  // file_path set: the data lives in another file
    int64_t num_values = 0;
    int64_t total_uncompressed_size = 0;
    int64_t total_compressed_size = 0;
    int64_t data_page_offset = 0;
    int64_t dictionary_page_offset = 0;
};

struct RowGroupMeta {
    std::vector<ColumnChunkMeta> columns;  // one per leaf column, in schema order
    int64_t num_rows = 0;
    int64_t total_byte_size = 0;
};

struct FileMetadata {
    int32_t version = 0;
    int64_t num_rows = 0;
    std::string created_by;
    std::vector<std::string> metadata_keys;  // key_value_metadata keys (values can be huge)
    std::vector<SchemaElement> schema;
    std::vector<ColumnDescriptor> columns;  // the leaves of `schema`
    std::vector<RowGroupMeta> row_groups;
};

// Decodes and validates a FileMetaData struct: the schema forms one tree, every row group has one
// chunk per leaf column whose path and type match the schema, counts and sizes are non-negative.
// Throws Error (without file context) on anything else.
FileMetadata parse_file_metadata(const uint8_t* data, size_t size);

struct PageHeader {
    PageType type = PageType::DataPage;
    int32_t uncompressed_page_size = 0;
    int32_t compressed_page_size = 0;
    int32_t num_values = 0;  // data and dictionary pages
    Encoding encoding = Encoding::Plain;
    // Data page v1.
    Encoding definition_level_encoding = Encoding::Rle;
    Encoding repetition_level_encoding = Encoding::Rle;
    // Data page v2.
    int32_t num_nulls = 0;
    int32_t num_rows = 0;
    int32_t definition_levels_byte_length = 0;
    int32_t repetition_levels_byte_length = 0;
    bool is_compressed = true;
};

// Decodes the page header at the start of [data, data + size); header_size receives its length.
// Checks that the sizes and counts are non-negative and that the header for the page's type is
// present. Throws Error (without file context).
PageHeader parse_page_header(const uint8_t* data, size_t size, size_t& header_size);

}  // namespace agpt::parquet
