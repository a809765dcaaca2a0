#pragma once
// Running a program in a fresh process and collecting what it printed: `agpt bench --sweep` and
// `agpt compete` run each cell or run as its own `agpt` process, so that one cell's crash, memory
// or thread settings cannot touch the next.
#include <functional>
#include <string>
#include <vector>

namespace agpt {

struct ProcessResult {
    int exit_code = -1;  // -1 when killed by a signal
    int signal = 0;      // the signal that ended it, 0 when it exited
    std::string out;     // everything it wrote to stdout
    std::string err;     // everything it wrote to stderr
    double seconds = 0;  // wall time
    bool ok() const { return exit_code == 0; }
    // One line saying why it failed: the last non-empty stderr line (else stdout's), with the
    // exit status or signal.
    std::string failure_line() const;
};

// Runs argv[0] (a path) with argv, stdin from /dev/null. When echo_path is not empty, stdout and
// stderr are also appended to that file as they arrive; on_stdout_line, when given, sees each
// complete stdout line (without its newline) as it arrives, for progress. Throws Error when the
// program cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& echo_path = "",
                          const std::function<void(const std::string&)>& on_stdout_line = {});

// The running executable (/proc/self/exe), for starting children of the same build.
std::string self_executable();

}  // namespace agpt
