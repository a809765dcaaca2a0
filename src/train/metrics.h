#pragma once
// Throughput accounting (design.md's metric names, as torchtitan logs them) and the CPU peak
// that MFU divides by.
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace agpt {

// Peak fp32 GEMM throughput of this machine with the current thread count, measured on a
// square n×n×n sgemm (best of `reps`). MFU on CPU is reported against this number.
double measure_gemm_peak_tflops(int n = 2048, int reps = 3);

// Appends one JSON object per line and flushes, so a reader (or a crash) sees whole lines.
class JsonlWriter {
  public:
    explicit JsonlWriter(const std::string& path);
    ~JsonlWriter();
    JsonlWriter(const JsonlWriter&) = delete;
    JsonlWriter& operator=(const JsonlWriter&) = delete;
    void write(const nlohmann::json& obj);

  private:
    std::FILE* f_ = nullptr;
    std::string path_;
};

// "2m05s", "1h02m", "12s".
std::string format_duration(double seconds);

// Keeps the lines of a metrics.jsonl whose step is <= last_step (a resumed run rewrites what came
// after; a line cut short by a kill is dropped). No file: nothing to do.
void truncate_metrics(const std::string& path, int last_step);

}  // namespace agpt
