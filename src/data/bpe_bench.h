#pragma once
// Tokenizer throughput, for `agpt tokenizer bench` and docs/benchmarks.md.
#include <cstddef>
#include <string_view>

#include "data/bpe_tokenizer.h"

namespace agpt {

struct BpeThroughput {
    std::size_t bytes = 0;
    std::size_t tokens = 0;
    double encode_cold_mb_s = 0;  // first pass, empty piece cache (what a new corpus sees)
    double encode_warm_mb_s = 0;  // best later pass, cache filled by the text itself
    double decode_mb_s = 0;       // best pass
};

// One thread. `repeats` >= 1 passes of each measurement after the cold one.
BpeThroughput bpe_measure_throughput(const BpeTokenizer& tok, std::string_view text, int repeats);

}  // namespace agpt
