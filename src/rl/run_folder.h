#pragma once
// The run folder of `agpt sft` and `agpt rl`, laid out as a training run's (config.toml,
// metrics.jsonl, tokenizer.json, checkpoints/step-N, plus a log): a new folder is created; an
// existing one with checkpoints and checkpoint.enable set is resumed from its newest checkpoint
// when its config.toml matches.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "train/config.h"

namespace agpt {

class RlLog {
  public:
    RlLog(std::FILE* console, const std::string& path);
    ~RlLog();
    RlLog(const RlLog&) = delete;
    RlLog& operator=(const RlLog&) = delete;
    template <typename... Args>
    void line(fmt::format_string<Args...> f, Args&&... args) {
        write(fmt::format(f, std::forward<Args>(args)...));
    }
    void write(const std::string& text);

  private:
    std::FILE* console_;
    std::FILE* file_;
};

struct RlRunFolder {
    std::string dir;
    bool resume = false;  // the folder holds this job's checkpoints
};

// Creates the run folder (or finds the one to resume) and writes config.toml. Throws Error when
// the folder exists and is not this job's resumable run.
RlRunFolder open_rl_run_folder(const JobConfig& cfg);

}  // namespace agpt
