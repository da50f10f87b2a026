#pragma once

// Small test utilities: thread counts, and running a test program as a subprocess.

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace warden_test {

// Sanitizer builds take more stack per frame and bound recursion more tightly.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized_build = true;
#else
inline constexpr bool sanitized_build = false;
#endif

// Through a pidfd (so that a recycled pid is never asked about): the process is no zombie of
// this program, having been reaped, or never having been its child.
inline bool reaped_or_not_ours(int pidfd) {
    siginfo_t info{};
    return ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                    WEXITED | WNOHANG | WNOWAIT) == -1 &&
           errno == ECHILD;
}

inline std::size_t thread_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/task"))
        ++n;
    return n;
}

// thread_count() before a test starts threads. ThreadSanitizer starts a thread of its own
// with the first thread a program makes: one is made first, so the count excludes nothing
// that the test's threads would add.
inline std::size_t thread_count_before_threads() {
    std::thread([] {}).join();
    return thread_count();
}

// `count()` read again until it is `expected` or `within` has passed; its last value.
template <class Count>
std::size_t once_settled(Count count, std::size_t expected, std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    auto n = count();
    while (n != expected && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
        n = count();
    }
    return n;
}

// thread_count(), read again until it is `expected` or 2 s have passed: a joined thread can
// stay listed in /proc/self/task a little after pthread_join returns (the kernel clears its
// tid before it removes it).
inline std::size_t thread_count_once_settled(std::size_t expected) {
    return once_settled(thread_count, expected, std::chrono::seconds(2));
}

// How many threads of this process are named `name` (/proc/self/task/*/comm), read again
// until it is `expected` or 5 s have passed: a helper thread's end may be noticed on another
// thread, which then joins it.
inline std::size_t threads_named_once_settled(const std::string& name, std::size_t expected) {
    auto named = [&] {
        std::size_t n = 0;
        std::error_code ec;
        for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
            std::ifstream comm(task.path() / "comm");
            std::string line;
            n += std::getline(comm, line) && line == name;
        }
        return n;
    };
    return once_settled(named, expected, std::chrono::seconds(5));
}

// The calling thread's kernel id, for thread_is_asleep().
inline pid_t this_thread_id() {
    return static_cast<pid_t>(::syscall(SYS_gettid));
}

// Waits (at most 5 s) until the task whose /proc stat file is `stat_path` sleeps in the
// kernel; false if it never did.
inline bool is_asleep(const std::string& stat_path) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
        std::ifstream in(stat_path);
        std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        // "tid (comm) S ...": the state follows the last ')'.
        const auto close = stat.rfind(')');
        if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'S')
            return true;
        std::this_thread::yield();
    }
    return false;
}

// Waits (at most 5 s) until thread `tid` of this process sleeps in the kernel, as a thread
// blocked in a wait does; false if it never did. This is how a test knows that another thread
// has entered a blocking call, with no sleep.
inline bool thread_is_asleep(pid_t tid) {
    return is_asleep("/proc/self/task/" + std::to_string(tid) + "/stat");
}

// Waits (at most 5 s) until process `pid` sleeps in a kernel function whose name holds `wait`
// (its /proc wchan), as one blocked for good in that call does; false if it never did. Sleeping
// is not enough where the process sleeps briefly elsewhere first (a shell between two commands).
inline bool process_waits_in(pid_t pid, const std::string& wait) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
        std::ifstream in("/proc/" + std::to_string(pid) + "/wchan");
        std::string wchan((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (wchan.find(wait) != std::string::npos)
            return true;
        std::this_thread::yield();
    }
    return false;
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
