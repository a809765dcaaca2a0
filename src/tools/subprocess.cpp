#include "tools/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/timer.h"

namespace agpt {

namespace {

std::string last_nonempty_line(const std::string& text) {
    std::size_t end = text.size();
    while (end > 0) {
        while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' '))
            end--;
        if (end == 0) break;
        const std::size_t begin = text.rfind('\n', end - 1);
        const std::size_t from = begin == std::string::npos ? 0 : begin + 1;
        return text.substr(from, end - from);
    }
    return {};
}

}  // namespace

std::string ProcessResult::failure_line() const {
    std::string line = last_nonempty_line(err);
    if (line.empty()) line = last_nonempty_line(out);
    const std::string status =
        signal != 0 ? fmt::format("killed by signal {} ({})", signal, strsignal(signal))
                    : fmt::format("exit status {}", exit_code);
    return line.empty() ? status : fmt::format("{} ({})", line, status);
}

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& echo_path,
                          const std::function<void(const std::string&)>& on_stdout_line) {
    if (argv.empty()) fail("run_process: no program given");
    int out_pipe[2], err_pipe[2], exec_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
        pipe2(exec_pipe, O_CLOEXEC) != 0)
        fail("{}: cannot create pipes: {}", argv[0], std::strerror(errno));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    Timer timer;
    const pid_t pid = fork();
    if (pid < 0) fail("{}: cannot fork: {}", argv[0], std::strerror(errno));
    if (pid == 0) {
        const int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(out_pipe[1], 1);
        dup2(err_pipe[1], 2);
        execv(args[0], args.data());
        // Only reached when exec failed: tell the parent why through the close-on-exec pipe.
        const int e = errno;
        [[maybe_unused]] const auto n = write(exec_pipe[1], &e, sizeof e);
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    close(exec_pipe[1]);
    int exec_errno = 0;
    const bool exec_failed =
        read(exec_pipe[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno;
    close(exec_pipe[0]);

    std::ofstream echo;
    if (!echo_path.empty()) echo.open(echo_path, std::ios::app);
    ProcessResult r;
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    std::string* sinks[2] = {&r.out, &r.err};
    int open_fds = 2;
    char buf[65536];
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            const ssize_t n = read(fds[k].fd, buf, sizeof buf);
            if (n > 0) {
                const std::size_t before = sinks[k]->size();
                sinks[k]->append(buf, static_cast<std::size_t>(n));
                if (echo) echo.write(buf, n).flush();
                if (k == 0 && on_stdout_line) {
                    // Lines completed by this read: from the start of the line `before` was in.
                    std::size_t start = r.out.rfind('\n', before == 0 ? 0 : before - 1);
                    start = start == std::string::npos || before == 0 ? 0 : start + 1;
                    for (std::size_t nl; (nl = r.out.find('\n', start)) != std::string::npos;
                         start = nl + 1)
                        if (nl >= before) on_stdout_line(r.out.substr(start, nl - start));
                }
            } else if (n == 0 || errno != EINTR) {
                close(fds[k].fd);
                fds[k].fd = -1;
                open_fds--;
            }
        }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r.seconds = timer.seconds();
    if (exec_failed) fail("{}: cannot run: {}", argv[0], std::strerror(exec_errno));
    if (WIFEXITED(status)) {
        r.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r.signal = WTERMSIG(status);
    }
    return r;
}

std::string self_executable() {
    std::error_code ec;
    const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) fail("/proc/self/exe: cannot read the running program's path: {}", ec.message());
    return p.string();
}

}  // namespace agpt
