// Child processes for `agpt bench --sweep` and `agpt compete`: output capture, line-by-line
// progress, exit statuses, signals and programs that cannot start.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "tools/subprocess.h"

namespace agpt {
namespace {

TEST(Subprocess, CapturesBothStreamsAndStatus) {
    const ProcessResult r =
        run_process({"/bin/sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3"});
    EXPECT_EQ(r.out, "out1\nout2\n");
    EXPECT_EQ(r.err, "err1\n");
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_EQ(r.signal, 0);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.failure_line(), "err1 (exit status 3)");
}

TEST(Subprocess, ReportsLinesAsTheyCompleteAcrossReads) {
    // The second line arrives in two pieces, a second apart; the last has no newline.
    std::vector<std::string> lines;
    const ProcessResult r =
        run_process({"/bin/sh", "-c", "printf 'one\\ntw'; sleep 1; printf 'o\\nthree\\n\\nfour'"},
                    "", [&](const std::string& line) { lines.push_back(line); });
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "three", ""}));
    EXPECT_EQ(r.out, "one\ntwo\nthree\n\nfour");
}

TEST(Subprocess, SignalsAndStartFailures) {
    const ProcessResult r = run_process({"/bin/sh", "-c", "echo dying >&2; kill -9 $$"});
    EXPECT_EQ(r.signal, 9);
    EXPECT_EQ(r.failure_line(), "dying (killed by signal 9 (Killed))");
    EXPECT_EQ(run_process({"/bin/sh", "-c", "exit 0"}).failure_line(), "exit status 0");
    try {
        run_process({"/no/such/program", "x"});
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "/no/such/program: cannot run: No such file or directory");
    }
}

}  // namespace
}  // namespace agpt
