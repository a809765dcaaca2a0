#include "rl/run_folder.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/text_file.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace agpt {

namespace fs = std::filesystem;

RlLog::RlLog(std::FILE* console, const std::string& path) : console_(console) {
    file_ = std::fopen(path.c_str(), "a");
    if (!file_) fail("{}: cannot open for writing", path);
}

RlLog::~RlLog() {
    std::fclose(file_);
}

void RlLog::write(const std::string& text) {
    const std::string s = text + "\n";
    if (console_) {
        std::fputs(s.c_str(), console_);
        std::fflush(console_);
    }
    std::fputs(s.c_str(), file_);
    std::fflush(file_);
}

namespace {

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

RlRunFolder open_rl_run_folder(const JobConfig& cfg) {
    const fs::path run = fs::path(cfg.job.dump_folder) / cfg.job.name;
    const std::string toml = job_config_to_toml(cfg);
    RlRunFolder out;
    out.dir = run.string();
    const CheckpointStore store((run / cfg.checkpoint.folder).string());
    if (cfg.checkpoint.enable && fs::exists(run) && !store.steps().empty()) {
        if (!fs::exists(run / "config.toml") || read_text(run / "config.toml") != toml)
            fail(
                "{}: the folder holds checkpoints of a run with another config; resume with the "
                "same command or choose another --job.name",
                run.string());
        out.resume = true;
        return out;
    }
    create_run_dir(cfg);
    write_text_atomically(run / "config.toml", toml);
    return out;
}

}  // namespace agpt
