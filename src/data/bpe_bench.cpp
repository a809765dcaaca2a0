#include "data/bpe_bench.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace agpt {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double mb_per_s(std::size_t bytes, double secs) {
    return secs > 0 ? static_cast<double>(bytes) / 1e6 / secs : 0.0;
}

}  // namespace

BpeThroughput bpe_measure_throughput(const BpeTokenizer& tok, std::string_view text, int repeats) {
    if (repeats < 1) fail("tokenizer bench: repeats must be >= 1, got {}", repeats);
    BpeThroughput r;
    r.bytes = text.size();
    BpeTokenizer::clear_thread_cache();
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids = tok.encode(text);
    r.encode_cold_mb_s = mb_per_s(text.size(), seconds_since(t0));
    r.tokens = ids.size();
    for (int i = 0; i < repeats; i++) {
        t0 = std::chrono::steady_clock::now();
        ids = tok.encode(text);
        r.encode_warm_mb_s = std::max(r.encode_warm_mb_s, mb_per_s(text.size(), seconds_since(t0)));
    }
    for (int i = 0; i < repeats; i++) {
        t0 = std::chrono::steady_clock::now();
        const std::string back = tok.decode(ids);
        const double secs = seconds_since(t0);
        if (back.size() != text.size()) fail("tokenizer bench: decode did not give the text back");
        r.decode_mb_s = std::max(r.decode_mb_s, mb_per_s(text.size(), secs));
    }
    return r;
}

}  // namespace agpt
