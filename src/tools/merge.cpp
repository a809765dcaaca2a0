#include "tools/merge.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/safetensors.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace agpt {

namespace fs = std::filesystem;

std::vector<double> wsm_weights(const std::string& decay, int n) {
    if (n < 1) fail("merge: need at least one checkpoint");
    auto f = [&](double x) {
        if (decay == "linear") return 1.0 - x;
        if (decay == "cosine") return 0.5 * (1.0 + std::cos(M_PI * x));
        if (decay == "1-sqrt") return 1.0 - std::sqrt(x);
        fail("--decay '{}': unknown (known: linear, cosine, 1-sqrt)", decay);
    };
    const int k = n - 1;
    std::vector<double> w(k + 2, 0.0);  // w[1..k]; w[k+1] = 0
    for (int i = 1; i <= k; i++) w[i] = f(static_cast<double>(i) / (k + 1));
    std::vector<double> c(n);
    c[0] = 1.0 - (k >= 1 ? w[1] : 0.0);
    for (int j = 1; j <= k; j++) c[j] = w[j] - w[j + 1];
    return c;
}

namespace {

std::string model_section(const fs::path& dir) {
    const fs::path p = dir / "config.toml";
    if (!fs::exists(p)) return "";
    const JobConfig cfg = load_job_config(p.string(), {});
    return cfg.model.name + "/" + cfg.model.flavor + "/" + cfg.model.tokenizer;
}

}  // namespace

void merge_checkpoints(const std::vector<std::string>& dirs, const std::vector<double>& weights,
                       const std::string& out_dir) {
    if (dirs.empty()) fail("merge: no checkpoints given");
    if (weights.size() != dirs.size())
        fail("merge: {} weights for {} checkpoints", weights.size(), dirs.size());
    double sum = 0.0;
    for (double w : weights) {
        if (!std::isfinite(w) || w < 0) fail("merge: weight {} must be finite and >= 0", w);
        sum += w;
    }
    if (std::fabs(sum - 1.0) > 1e-6) fail("merge: weights sum to {}, not 1", sum);
    if (fs::exists(out_dir)) fail("{}: already exists; choose another --out", out_dir);

    std::vector<SafetensorsFile> files;
    const std::string model0 = model_section(dirs[0]);
    for (const auto& d : dirs) {
        verify_checkpoint(d);
        const std::string m = model_section(d);
        if (m != model0) fail("{}: model '{}' differs from {}'s '{}'", d, m, dirs[0], model0);
        files.emplace_back((fs::path(d) / "model.safetensors").string());
    }
    const std::vector<std::string> names = files[0].names();
    for (std::size_t i = 1; i < files.size(); i++) {
        if (files[i].names() != names)
            fail("{}: holds other tensors than {}", files[i].path(), files[0].path());
        for (const auto& n : names)
            if (files[i].tensor(n).shape != files[0].tensor(n).shape)
                fail("{}: tensor '{}' has another shape than in {}", files[i].path(), n,
                     files[0].path());
    }

    SafetensorsWriter out;
    for (const auto& n : names) {
        const std::size_t numel = static_cast<std::size_t>(files[0].tensor(n).numel());
        std::vector<double> acc(numel, 0.0);
        for (std::size_t i = 0; i < files.size(); i++) {
            const std::vector<float> t = files[i].get<float>(n);
            for (std::size_t e = 0; e < numel; e++) acc[e] += weights[i] * t[e];
        }
        std::vector<float> merged(acc.begin(), acc.end());
        out.add<float>(n, files[0].tensor(n).shape, merged.data());
    }
    out.set_metadata("format", "pt");
    const fs::path tmp = out_dir + ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    out.write((tmp / "model.safetensors").string());
    if (fs::exists(fs::path(dirs[0]) / "config.toml"))
        fs::copy_file(fs::path(dirs[0]) / "config.toml", tmp / "config.toml");
    finalize_checkpoint(tmp.string(), out_dir, 0, true);
}

}  // namespace agpt
