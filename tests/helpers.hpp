#pragma once

// Small test utilities: thread counts, and running a test program as a subprocess.

#include <cstdio>
#include <filesystem>
#include <string>
#include <sys/wait.h>

namespace warden_test {

inline std::size_t thread_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/task"))
        ++n;
    return n;
}

inline std::size_t fd_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

struct program_result {
    int exit_code = -1; // -1 when killed by a signal
    int signal = 0;
    std::string output; // stdout and stderr
};

// Runs a shell command line, capturing stdout and stderr together.
inline program_result run_program(const std::string& command) {
    program_result result;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr)
        return result;
    char buffer[4096];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0)
        result.output.append(buffer, n);
    const int status = ::pclose(pipe);
    if (WIFEXITED(status))
        result.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        result.signal = WTERMSIG(status);
    return result;
}

} // namespace warden_test
