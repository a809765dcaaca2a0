#include "train/metrics.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "core/text_file.h"
#include "core/timer.h"
#include "kernels/cpu/gemm.h"

namespace agpt {

double measure_gemm_peak_tflops(int n, int reps) {
    std::vector<float> a(static_cast<std::size_t>(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size());
    cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        Timer t;
        cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
        best = std::min(best, t.seconds());
    }
    return 2.0 * n * n * static_cast<double>(n) / best / 1e12;
}

JsonlWriter::JsonlWriter(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "a");
    if (!f_) fail("{}: cannot open for writing", path);
}

JsonlWriter::~JsonlWriter() {
    if (f_) std::fclose(f_);
}

void JsonlWriter::write(const nlohmann::json& obj) {
    const std::string line = obj.dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
        fail("{}: write failed", path_);
}

std::string format_duration(double seconds) {
    const long s = static_cast<long>(seconds + 0.5);
    if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
    if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
    return fmt::format("{}s", s);
}

void truncate_metrics(const std::string& path, int last_step) {
    if (!std::filesystem::exists(path)) return;
    std::ifstream in(path);
    std::string kept;
    for (std::string line; std::getline(in, line);) {
        try {
            if (nlohmann::json::parse(line).value("step", 0) > last_step) continue;
        } catch (const nlohmann::json::exception&) {
            continue;  // a line cut short by the kill
        }
        kept += line + "\n";
    }
    in.close();
    write_text_atomically(path, kept);
}

}  // namespace agpt
