#pragma once
// What `agpt data inspect` prints about a parquet file: the schema, the row groups with each
// column's codec, encodings and sizes, and the first rows of one string column — the first
// things parquet-tools or pyarrow users look at.
#include <cstddef>
#include <string>

#include "data/parquet/parquet_reader.h"

namespace agpt::parquet {

// File summary, schema and up to max_row_groups row groups (the rest are counted).
std::string describe_parquet(const ParquetFile& file, size_t max_row_groups = 10);

// The first `rows` rows of a string column, nulls included, one per line as JSON strings cut to
// max_value_bytes (at a UTF-8 boundary). Error if the column is missing or not a string column.
std::string preview_column(const ParquetFile& file, const std::string& column, size_t rows,
                           size_t max_value_bytes = 300);

}  // namespace agpt::parquet
