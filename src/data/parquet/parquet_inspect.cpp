#include "data/parquet/parquet_inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace agpt::parquet {

namespace {

using Row = std::vector<std::string>;

// Left-aligned columns two spaces apart, each line indented by two.
void append_table(std::string& out, const std::vector<Row>& rows) {
    std::vector<size_t> width;
    for (const Row& r : rows) {
        width.resize(std::max(width.size(), r.size()));
        for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    }
    for (const Row& r : rows) {
        std::string line = " ";
        for (size_t i = 0; i < r.size(); ++i) {
            line += ' ';
            line += r[i];
            if (i + 1 < r.size()) line.append(width[i] - r[i].size() + 1, ' ');
        }
        out += line + '\n';
    }
}

std::string encodings_list(const ColumnChunkMeta& m) {
    std::string s;
    for (int e = 0; e < 31; ++e) {
        if (m.encodings & (1u << e)) {
            if (!s.empty()) s += ',';
            s += encoding_name(static_cast<Encoding>(e));
        }
    }
    if (m.unknown_encodings) s += s.empty() ? "?" : ",?";
    return s;
}

// JSON string syntax, so that newlines and control bytes stay on one line.
std::string quote(std::string_view v, size_t max_bytes) {
    size_t cut = std::min(v.size(), max_bytes);
    while (cut < v.size() && cut > 0 && (static_cast<unsigned char>(v[cut]) & 0xC0) == 0x80) --cut;
    std::string out = "\"";
    for (char c : v.substr(0, cut)) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
                } else {
                    out += c;
                }
        }
    }
    out += '"';
    if (cut < v.size()) out += fmt::format("… ({} bytes)", v.size());
    return out;
}

class PreviewSink final : public ValueSink {
  public:
    explicit PreviewSink(size_t rows) : rows_(rows) {}
    void values(std::string_view v, uint64_t count) override {
        for (uint64_t i = 0; i < count && !full(); ++i) got_.emplace_back(std::string(v));
    }
    void nulls(uint64_t count) override {
        for (uint64_t i = 0; i < count && !full(); ++i) got_.emplace_back(std::nullopt);
    }
    bool full() const override { return got_.size() >= rows_; }
    const std::vector<std::optional<std::string>>& rows() const { return got_; }

  private:
    size_t rows_;
    std::vector<std::optional<std::string>> got_;
};

}  // namespace

std::string describe_parquet(const ParquetFile& file, size_t max_row_groups) {
    const FileMetadata& md = file.metadata();
    std::string out;
    std::vector<Row> head = {
        {"file", file.name()},
        {"size", fmt::format("{} bytes (footer {} bytes)", file.file_size(), file.footer_size())},
        {"created by", md.created_by.empty() ? "(not recorded)" : printable(md.created_by, 200)},
        {"format", fmt::format("version {}", md.version)},
        {"rows", fmt::format("{} in {} row group{}", md.num_rows, md.row_groups.size(),
                             md.row_groups.size() == 1 ? "" : "s")},
    };
    if (!md.metadata_keys.empty()) {
        std::string keys;
        for (const auto& k : md.metadata_keys) {
            if (!keys.empty()) keys += ", ";
            keys += printable(k);
        }
        head.push_back({"metadata", keys});
    }
    for (Row& r : head) r[0] += ':';
    append_table(out, head);

    out += fmt::format("\nschema ({} columns)\n", md.columns.size());
    std::vector<Row> schema = {{"column", "type", "logical", "repetition", "def", "rep"}};
    for (const ColumnDescriptor& c : md.columns) {
        schema.push_back({printable(c.path), physical_type_name(c.type),
                          c.logical.empty() ? "-" : c.logical, repetition_name(c.repetition),
                          std::to_string(c.max_definition_level),
                          std::to_string(c.max_repetition_level)});
    }
    append_table(out, schema);

    const size_t shown = std::min(md.row_groups.size(), max_row_groups);
    for (size_t g = 0; g < shown; ++g) {
        const RowGroupMeta& rg = md.row_groups[g];
        out += fmt::format("\nrow group {}: {} rows, {} bytes uncompressed\n", g, rg.num_rows,
                           rg.total_byte_size);
        std::vector<Row> table = {
            {"column", "codec", "encodings", "values", "compressed", "uncompressed"}};
        for (size_t c = 0; c < rg.columns.size(); ++c) {
            const ColumnChunkMeta& m = rg.columns[c];
            table.push_back({printable(md.columns[c].path), codec_name(m.codec), encodings_list(m),
                             std::to_string(m.num_values), std::to_string(m.total_compressed_size),
                             std::to_string(m.total_uncompressed_size)});
        }
        append_table(out, table);
    }
    if (shown < md.row_groups.size()) {
        out += fmt::format("\n... {} more row groups\n", md.row_groups.size() - shown);
    }
    return out;
}

std::string preview_column(const ParquetFile& file, const std::string& column, size_t rows,
                           size_t max_value_bytes) {
    const size_t index = file.column_index(column);
    file.check_text_column(index);
    PreviewSink sink(rows);
    for (size_t g = 0; g < file.num_row_groups() && !sink.full(); ++g) {
        file.read_values(g, index, sink);
    }
    std::string out;
    if (file.num_row_groups() > 0) {
        // Page kinds are only in the page headers (pyarrow's encoding_stats call v2 pages v1).
        std::vector<std::pair<std::string, size_t>> kinds;
        for (const PageSummary& p : file.page_headers(0, index)) {
            std::string kind = page_type_name(p.type);
            if (p.type != PageType::IndexPage) {
                kind += ' ';
                kind += encoding_name(p.encoding);
            }
            if (kinds.empty() || kinds.back().first != kind) {
                kinds.emplace_back(kind, 1);
            } else {
                ++kinds.back().second;
            }
        }
        std::string list;
        for (const auto& [kind, count] : kinds) {
            if (!list.empty()) list += ", ";
            list += fmt::format("{} x{}", kind, count);
        }
        out += fmt::format("pages of column '{}' in row group 0: {}\n\n", printable(column),
                           list.empty() ? "none" : list);
    }
    out += fmt::format("first {} rows of column '{}'\n", sink.rows().size(), printable(column));
    std::vector<Row> table;
    for (size_t i = 0; i < sink.rows().size(); ++i) {
        const auto& v = sink.rows()[i];
        table.push_back({std::to_string(i), v ? quote(*v, max_value_bytes) : "null"});
    }
    append_table(out, table);
    return out;
}

}  // namespace agpt::parquet
