#include "data/parquet/parquet_metadata.h"

#include <fmt/format.h>

#include "core/error.h"
#include "data/parquet/thrift_compact.h"

namespace agpt::parquet {

namespace {

// Schema trees deeper than this are not written by any tool we know of; deeper means hostile.
constexpr int kMaxSchemaDepth = 64;

template <size_t N>
std::string enum_name(int32_t v, const char* const (&names)[N], const char* kind) {
    if (v >= 0 && static_cast<size_t>(v) < N && names[v][0] != '\0') return names[v];
    return fmt::format("{}({})", kind, v);
}

const char* const kLogicalNames[] = {
    "",        "STRING", "MAP",  "LIST", "ENUM", "DECIMAL", "DATE",    "TIME",     "TIMESTAMP", "",
    "INTEGER", "NULL",   "JSON", "BSON", "UUID", "FLOAT16", "VARIANT", "GEOMETRY", "GEOGRAPHY"};

const char* const kConvertedNames[] = {"UTF8",
                                       "MAP",
                                       "MAP_KEY_VALUE",
                                       "LIST",
                                       "ENUM",
                                       "DECIMAL",
                                       "DATE",
                                       "TIME_MILLIS",
                                       "TIME_MICROS",
                                       "TIMESTAMP_MILLIS",
                                       "TIMESTAMP_MICROS",
                                       "UINT_8",
                                       "UINT_16",
                                       "UINT_32",
                                       "UINT_64",
                                       "INT_8",
                                       "INT_16",
                                       "INT_32",
                                       "INT_64",
                                       "JSON",
                                       "BSON",
                                       "INTERVAL"};

// Expects a field of the given wire type; a mismatch means the bytes are not what they claim.
void expect_type(ThriftType got, ThriftType want, const char* field) {
    const bool got_bool = got == ThriftType::BoolTrue || got == ThriftType::BoolFalse;
    const bool want_bool = want == ThriftType::BoolTrue || want == ThriftType::BoolFalse;
    if (got != want && !(got_bool && want_bool)) {
        fail("field {} has thrift type {} instead of {}", field, static_cast<int>(got),
             static_cast<int>(want));
    }
}

int32_t read_i32_field(ThriftReader& r, ThriftType t, const char* field) {
    expect_type(t, ThriftType::I32, field);
    return r.read_i32();
}

int64_t read_i64_field(ThriftReader& r, ThriftType t, const char* field) {
    expect_type(t, ThriftType::I64, field);
    return r.read_i64();
}

// The LogicalType union: which member is set is all we keep.
int32_t read_logical_type(ThriftReader& r) {
    int32_t which = 0;
    r.begin_struct();
    int16_t id;
    ThriftType t;
    while (r.next_field(id, t)) {
        if (t == ThriftType::Struct && which == 0) which = id;
        r.skip(t);
    }
    return which;
}

SchemaElement read_schema_element(ThriftReader& r) {
    SchemaElement e;
    bool has_name = false;
    r.begin_struct();
    int16_t id;
    ThriftType t;
    while (r.next_field(id, t)) {
        switch (id) {
            case 1:
                e.type = static_cast<PhysicalType>(read_i32_field(r, t, "SchemaElement.type"));
                e.has_type = true;
                break;
            case 2:
                e.type_length = read_i32_field(r, t, "SchemaElement.type_length");
                break;
            case 3:
                e.repetition =
                    static_cast<Repetition>(read_i32_field(r, t, "SchemaElement.repetition_type"));
                e.has_repetition = true;
                break;
            case 4:
                expect_type(t, ThriftType::Binary, "SchemaElement.name");
                e.name = r.read_string();
                has_name = true;
                break;
            case 5:
                e.num_children = read_i32_field(r, t, "SchemaElement.num_children");
                break;
            case 6:
                e.converted_type = read_i32_field(r, t, "SchemaElement.converted_type");
                break;
            case 10:
                expect_type(t, ThriftType::Struct, "SchemaElement.logicalType");
                e.logical_type = read_logical_type(r);
                break;
            default:
                r.skip(t);
        }
    }
    if (!has_name) fail("schema element without a name");
    if (e.num_children < 0)
        fail("schema element '{}' has {} children", printable(e.name), e.num_children);
    if (e.has_repetition &&
        (static_cast<int32_t>(e.repetition) < 0 || static_cast<int32_t>(e.repetition) > 2)) {
        fail("schema element '{}' has an unknown repetition {}", printable(e.name),
             static_cast<int32_t>(e.repetition));
    }
    return e;
}

std::string logical_summary(const SchemaElement& e) {
    if (e.logical_type != 0) return enum_name(e.logical_type, kLogicalNames, "LOGICAL");
    if (e.converted_type >= 0) return enum_name(e.converted_type, kConvertedNames, "CONVERTED");
    return "";
}

struct SchemaWalk {
    const std::vector<SchemaElement>& schema;
    std::vector<ColumnDescriptor>& columns;
    size_t next = 1;

    // Visits the children of a node; levels and path are those of the node itself.
    void children(size_t count, const std::string& path, int def, int rep, int depth) {
        if (depth > kMaxSchemaDepth) fail("schema nested deeper than {} levels", kMaxSchemaDepth);
        for (size_t c = 0; c < count; ++c) {
            if (next >= schema.size()) {
                fail("schema lists {} elements but its groups claim more children", schema.size());
            }
            const size_t index = next++;
            const SchemaElement& e = schema[index];
            const std::string child_path = path.empty() ? e.name : path + "." + e.name;
            int d = def, r = rep;
            if (e.repetition == Repetition::Optional) ++d;
            if (e.repetition == Repetition::Repeated) ++d, ++r;
            if (e.num_children > 0) {
                children(static_cast<size_t>(e.num_children), child_path, d, r, depth + 1);
                continue;
            }
            if (!e.has_type) fail("schema leaf '{}' has no physical type", printable(child_path));
            ColumnDescriptor col;
            col.path = child_path;
            col.schema_index = index;
            col.type = e.type;
            col.max_definition_level = d;
            col.max_repetition_level = r;
            col.logical = logical_summary(e);
            col.repetition = e.repetition;
            columns.push_back(std::move(col));
        }
    }
};

std::vector<ColumnDescriptor> leaf_columns(const std::vector<SchemaElement>& schema) {
    if (schema.empty()) fail("the schema is empty");
    std::vector<ColumnDescriptor> columns;
    SchemaWalk walk{schema, columns};
    walk.children(static_cast<size_t>(schema[0].num_children), "", 0, 0, 1);
    if (walk.next != schema.size()) {
        fail("schema lists {} elements but its tree holds {}", schema.size(), walk.next);
    }
    if (columns.empty()) fail("the schema has no columns");
    return columns;
}

ColumnChunkMeta read_column_meta(ThriftReader& r, const ColumnDescriptor& col) {
    ColumnChunkMeta m;
    uint32_t seen = 0;
    r.begin_struct();
    int16_t id;
    ThriftType t;
    while (r.next_field(id, t)) {
        if (id > 0 && id < 32) seen |= 1u << id;
        switch (id) {
            case 1:
                m.type = static_cast<PhysicalType>(read_i32_field(r, t, "ColumnMetaData.type"));
                break;
            case 2: {
                expect_type(t, ThriftType::List, "ColumnMetaData.encodings");
                ThriftType et;
                const uint32_t n = r.begin_list(et);
                expect_type(et, ThriftType::I32, "ColumnMetaData.encodings");
                for (uint32_t i = 0; i < n; ++i) {
                    const int32_t e = r.read_i32();
                    if (e >= 0 && e < 31) {
                        m.encodings |= 1u << e;
                    } else {
                        m.unknown_encodings = true;
                    }
                }
                break;
            }
            case 3: {
                expect_type(t, ThriftType::List, "ColumnMetaData.path_in_schema");
                ThriftType et;
                const uint32_t n = r.begin_list(et);
                expect_type(et, ThriftType::Binary, "ColumnMetaData.path_in_schema");
                std::string path;
                for (uint32_t i = 0; i < n; ++i) {
                    if (i > 0) path += '.';
                    path += r.read_binary();
                }
                if (path != col.path) {
                    fail("column chunk path '{}' does not match the schema's '{}'", printable(path),
                         printable(col.path));
                }
                break;
            }
            case 4:
                m.codec = static_cast<Codec>(read_i32_field(r, t, "ColumnMetaData.codec"));
                break;
            case 5:
                m.num_values = read_i64_field(r, t, "ColumnMetaData.num_values");
                break;
            case 6:
                m.total_uncompressed_size =
                    read_i64_field(r, t, "ColumnMetaData.total_uncompressed_size");
                break;
            case 7:
                m.total_compressed_size =
                    read_i64_field(r, t, "ColumnMetaData.total_compressed_size");
                break;
            case 9:
                m.data_page_offset = read_i64_field(r, t, "ColumnMetaData.data_page_offset");
                break;
            case 11:
                m.dictionary_page_offset =
                    read_i64_field(r, t, "ColumnMetaData.dictionary_page_offset");
                m.has_dictionary_page_offset = true;
                break;
            default:
                r.skip(t);
        }
    }
    for (int required : {1, 2, 3, 4, 5, 6, 7, 9}) {
        if ((seen & (1u << required)) == 0) {
            fail("column '{}' metadata lacks required field {}", printable(col.path), required);
        }
    }
    if (m.type != col.type) {
        fail("column '{}' chunk has type {} but the schema says {}", printable(col.path),
             physical_type_name(m.type), physical_type_name(col.type));
    }
    if (m.num_values < 0 || m.total_uncompressed_size < 0 || m.total_compressed_size < 0 ||
        m.data_page_offset < 0 || m.dictionary_page_offset < 0) {
        fail("column '{}' metadata has a negative count, size or offset", printable(col.path));
    }
    return m;
}

ColumnChunkMeta read_column_chunk(ThriftReader& r, const ColumnDescriptor& col) {
    ColumnChunkMeta m;
    bool has_meta = false, in_other_file = false;
    r.begin_struct();
    int16_t id;
    ThriftType t;
    while (r.next_field(id, t)) {
        switch (id) {
            case 1:
                expect_type(t, ThriftType::Binary, "ColumnChunk.file_path");
                in_other_file = !r.read_binary().empty();
                break;
            case 3:
                expect_type(t, ThriftType::Struct, "ColumnChunk.meta_data");
                m = read_column_meta(r, col);
                has_meta = true;
                break;
            default:
                r.skip(t);
        }
    }
    if (!has_meta)
        fail("column '{}' chunk has no metadata (encrypted files are not supported)",
             printable(col.path));
    m.in_other_file = in_other_file;
    return m;
}

RowGroupMeta read_row_group(ThriftReader& r, const std::vector<ColumnDescriptor>& columns) {
    RowGroupMeta g;
    bool has_columns = false, has_rows = false;
    r.begin_struct();
    int16_t id;
    ThriftType t;
    while (r.next_field(id, t)) {
        switch (id) {
            case 1: {
                expect_type(t, ThriftType::List, "RowGroup.columns");
                ThriftType et;
                const uint32_t n = r.begin_list(et);
                expect_type(et, ThriftType::Struct, "RowGroup.columns");
                if (n != columns.size()) {
                    fail("row group has {} column chunks but the schema has {} columns", n,
                         columns.size());
                }
                g.columns.reserve(n);
                for (uint32_t i = 0; i < n; ++i)
                    g.columns.push_back(read_column_chunk(r, columns[i]));
                has_columns = true;
                break;
            }
            case 2:
                g.total_byte_size = read_i64_field(r, t, "RowGroup.total_byte_size");
                break;
            case 3:
                g.num_rows = read_i64_field(r, t, "RowGroup.num_rows");
                has_rows = true;
                break;
            default:
                r.skip(t);
        }
    }
    if (!has_columns || !has_rows) fail("row group lacks its columns or row count");
    if (g.num_rows < 0) fail("row group has {} rows", g.num_rows);
    return g;
}

}  // namespace

std::string printable(std::string_view s, size_t max_bytes) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < max_bytes; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > max_bytes) out += "...";
    return out;
}

std::string physical_type_name(PhysicalType t) {
    static const char* const names[] = {"BOOLEAN", "INT32",  "INT64",      "INT96",
                                        "FLOAT",   "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};
    return enum_name(static_cast<int32_t>(t), names, "TYPE");
}

std::string codec_name(Codec c) {
    static const char* const names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO",
                                        "BROTLI",       "LZ4",    "ZSTD", "LZ4_RAW"};
    return enum_name(static_cast<int32_t>(c), names, "CODEC");
}

std::string encoding_name(Encoding e) {
    static const char* const names[] = {"PLAIN",
                                        "",
                                        "PLAIN_DICTIONARY",
                                        "RLE",
                                        "BIT_PACKED",
                                        "DELTA_BINARY_PACKED",
                                        "DELTA_LENGTH_BYTE_ARRAY",
                                        "DELTA_BYTE_ARRAY",
                                        "RLE_DICTIONARY",
                                        "BYTE_STREAM_SPLIT"};
    return enum_name(static_cast<int32_t>(e), names, "ENCODING");
}

std::string page_type_name(PageType t) {
    static const char* const names[] = {"DATA_PAGE", "INDEX_PAGE", "DICTIONARY_PAGE",
                                        "DATA_PAGE_V2"};
    return enum_name(static_cast<int32_t>(t), names, "PAGE");
}

std::string repetition_name(Repetition r) {
    static const char* const names[] = {"required", "optional", "repeated"};
    return enum_name(static_cast<int32_t>(r), names, "REPETITION");
}

FileMetadata parse_file_metadata(const uint8_t* data, size_t size) {
    ThriftReader r(data, size);
    FileMetadata md;
    bool has_version = false, has_schema = false, has_rows = false, has_row_groups = false;
    r.begin_struct();
    int16_t id;
    ThriftType t;
    while (r.next_field(id, t)) {
        switch (id) {
            case 1:
                md.version = read_i32_field(r, t, "FileMetaData.version");
                has_version = true;
                break;
            case 2: {
                expect_type(t, ThriftType::List, "FileMetaData.schema");
                ThriftType et;
                const uint32_t n = r.begin_list(et);
                expect_type(et, ThriftType::Struct, "FileMetaData.schema");
                for (uint32_t i = 0; i < n; ++i) md.schema.push_back(read_schema_element(r));
                md.columns = leaf_columns(md.schema);
                has_schema = true;
                break;
            }
            case 3:
                md.num_rows = read_i64_field(r, t, "FileMetaData.num_rows");
                has_rows = true;
                break;
            case 4: {
                expect_type(t, ThriftType::List, "FileMetaData.row_groups");
                if (!has_schema) fail("row groups are listed before the schema");
                ThriftType et;
                const uint32_t n = r.begin_list(et);
                expect_type(et, ThriftType::Struct, "FileMetaData.row_groups");
                for (uint32_t i = 0; i < n; ++i) {
                    try {
                        md.row_groups.push_back(read_row_group(r, md.columns));
                    } catch (const Error& e) {
                        fail("row group {}: {}", i, e.what());
                    }
                }
                has_row_groups = true;
                break;
            }
            case 5: {
                expect_type(t, ThriftType::List, "FileMetaData.key_value_metadata");
                ThriftType et;
                const uint32_t n = r.begin_list(et);
                expect_type(et, ThriftType::Struct, "FileMetaData.key_value_metadata");
                for (uint32_t i = 0; i < n; ++i) {
                    r.begin_struct();
                    int16_t kid;
                    ThriftType kt;
                    while (r.next_field(kid, kt)) {
                        if (kid == 1 && kt == ThriftType::Binary) {
                            md.metadata_keys.push_back(r.read_string());
                        } else {
                            r.skip(kt);
                        }
                    }
                }
                break;
            }
            case 6:
                expect_type(t, ThriftType::Binary, "FileMetaData.created_by");
                md.created_by = r.read_string();
                break;
            default:
                r.skip(t);
        }
    }
    if (!has_version || !has_schema || !has_rows || !has_row_groups) {
        fail("file metadata lacks its {}", !has_version  ? "version"
                                           : !has_schema ? "schema"
                                           : !has_rows   ? "row count"
                                                         : "row groups");
    }
    if (md.num_rows < 0) fail("file metadata claims {} rows", md.num_rows);
    return md;
}

PageHeader parse_page_header(const uint8_t* data, size_t size, size_t& header_size) {
    ThriftReader r(data, size);
    PageHeader h;
    bool has_type = false, has_sizes = false, has_data = false, has_dict = false, has_v2 = false;
    int16_t id;
    ThriftType t;
    r.begin_struct();
    while (r.next_field(id, t)) {
        switch (id) {
            case 1:
                h.type = static_cast<PageType>(read_i32_field(r, t, "PageHeader.type"));
                has_type = true;
                break;
            case 2:
                h.uncompressed_page_size =
                    read_i32_field(r, t, "PageHeader.uncompressed_page_size");
                break;
            case 3:
                h.compressed_page_size = read_i32_field(r, t, "PageHeader.compressed_page_size");
                has_sizes = true;
                break;
            case 5: {
                expect_type(t, ThriftType::Struct, "PageHeader.data_page_header");
                r.begin_struct();
                int16_t sid;
                ThriftType st;
                while (r.next_field(sid, st)) {
                    switch (sid) {
                        case 1:
                            h.num_values = read_i32_field(r, st, "DataPageHeader.num_values");
                            break;
                        case 2:
                            h.encoding = static_cast<Encoding>(
                                read_i32_field(r, st, "DataPageHeader.encoding"));
                            break;
                        case 3:
                            h.definition_level_encoding = static_cast<Encoding>(
                                read_i32_field(r, st, "DataPageHeader.definition_level_encoding"));
                            break;
                        case 4:
                            h.repetition_level_encoding = static_cast<Encoding>(
                                read_i32_field(r, st, "DataPageHeader.repetition_level_encoding"));
                            break;
                        default:
                            r.skip(st);
                    }
                }
                has_data = true;
                break;
            }
            case 7: {
                expect_type(t, ThriftType::Struct, "PageHeader.dictionary_page_header");
                r.begin_struct();
                int16_t sid;
                ThriftType st;
                while (r.next_field(sid, st)) {
                    switch (sid) {
                        case 1:
                            h.num_values = read_i32_field(r, st, "DictionaryPageHeader.num_values");
                            break;
                        case 2:
                            h.encoding = static_cast<Encoding>(
                                read_i32_field(r, st, "DictionaryPageHeader.encoding"));
                            break;
                        default:
                            r.skip(st);
                    }
                }
                has_dict = true;
                break;
            }
            case 8: {
                expect_type(t, ThriftType::Struct, "PageHeader.data_page_header_v2");
                r.begin_struct();
                int16_t sid;
                ThriftType st;
                while (r.next_field(sid, st)) {
                    switch (sid) {
                        case 1:
                            h.num_values = read_i32_field(r, st, "DataPageHeaderV2.num_values");
                            break;
                        case 2:
                            h.num_nulls = read_i32_field(r, st, "DataPageHeaderV2.num_nulls");
                            break;
                        case 3:
                            h.num_rows = read_i32_field(r, st, "DataPageHeaderV2.num_rows");
                            break;
                        case 4:
                            h.encoding = static_cast<Encoding>(
                                read_i32_field(r, st, "DataPageHeaderV2.encoding"));
                            break;
                        case 5:
                            h.definition_levels_byte_length = read_i32_field(
                                r, st, "DataPageHeaderV2.definition_levels_byte_length");
                            break;
                        case 6:
                            h.repetition_levels_byte_length = read_i32_field(
                                r, st, "DataPageHeaderV2.repetition_levels_byte_length");
                            break;
                        case 7:
                            expect_type(st, ThriftType::BoolTrue, "DataPageHeaderV2.is_compressed");
                            h.is_compressed = ThriftReader::field_bool(st);
                            break;
                        default:
                            r.skip(st);
                    }
                }
                has_v2 = true;
                break;
            }
            default:
                r.skip(t);
        }
    }
    header_size = r.position();
    if (!has_type || !has_sizes) fail("page header lacks its type or sizes");
    if (h.uncompressed_page_size < 0 || h.compressed_page_size < 0 || h.num_values < 0 ||
        h.num_nulls < 0 || h.num_rows < 0 || h.definition_levels_byte_length < 0 ||
        h.repetition_levels_byte_length < 0) {
        fail("page header has a negative size or count");
    }
    if ((h.type == PageType::DataPage && !has_data) ||
        (h.type == PageType::DictionaryPage && !has_dict) ||
        (h.type == PageType::DataPageV2 && !has_v2)) {
        fail("{} header lacks its {} fields", page_type_name(h.type), page_type_name(h.type));
    }
    return h;
}

}  // namespace agpt::parquet
