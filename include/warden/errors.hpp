#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <warden/report.hpp>

namespace warden {

// Spawning on a supervisor that was cancelled or has failed (under fail_fast).
class supervisor_closed : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A child still running when a wait's deadline passed: the child_info of children(with_stacks).
using running_child [[deprecated("use warden::child_info")]] = child_info;

// wait_for / wait_until ran out of time. what() is the supervisor's dump (`dump`, when given):
// the running children, the longest running first (all of them, or the first 32 and how
// many more there are), each with where it is now, and the children that finished recently.
class join_timeout : public std::runtime_error {
  public:
    join_timeout(std::string supervisor, std::chrono::milliseconds timeout,
                 std::vector<child_info> running, std::size_t unlisted = 0, std::string dump = {});
    // The children listed in what().
    const std::vector<child_info>& running() const noexcept { return running_; }
    // How many more were running, not listed.
    std::size_t unlisted() const noexcept { return unlisted_; }
    std::chrono::milliseconds timeout() const noexcept { return timeout_; }

  private:
    std::chrono::milliseconds timeout_;
    std::vector<child_info> running_;
    std::size_t unlisted_;
};

// policy::collect: every failure, in the order they happened.
class failure_group : public std::runtime_error {
  public:
    explicit failure_group(std::vector<failure_report> reports);
    const std::vector<failure_report>& reports() const noexcept { return reports_; }

  private:
    std::vector<failure_report> reports_;
};

// A process could not be started: which argument was wrong, and the errno text.
class spawn_error : public std::system_error {
  public:
    spawn_error(std::error_code ec, std::string argument, const std::string& detail);
    const std::string& argument() const noexcept { return argument_; }

  private:
    std::string argument_;
};

// "SIGSEGV" for 11; "signal N" when the number has no name.
std::string signal_name(int signal);

// A subprocess exited with a non-zero status, or printed a sanitizer report (then also with 0).
class process_error : public std::runtime_error {
  public:
    process_error(std::vector<std::string> argv, int pid, int exit_code,
                  std::vector<std::string> output_tail, std::string sanitizer = {},
                  std::vector<std::string> left_running = {});
    const std::vector<std::string>& argv() const noexcept { return argv_; }
    int pid() const noexcept { return pid_; }
    int exit_code() const noexcept { return exit_code_; }
    const std::vector<std::string>& output_tail() const noexcept { return output_tail_; }
    // The first sanitizer report in the output, as "<sanitizer>: <kind> in <function> at
    // <file:line>"; empty if there was none. what() starts with it.
    const std::string& sanitizer() const noexcept { return sanitizer_; }
    // Descendants still running when the process ended, which warden then killed, as
    // "pid 1234 (sleep 1000)"; the last entry is "and N more" past 16. what() lists them.
    const std::vector<std::string>& left_running() const noexcept { return left_running_; }

  private:
    std::vector<std::string> argv_;
    int pid_;
    int exit_code_;
    std::vector<std::string> output_tail_;
    std::string sanitizer_;
    std::vector<std::string> left_running_;
};

namespace detail {
class crash_text;
}

// A subprocess (or forked child) was killed by a signal.
class process_crashed : public std::runtime_error {
  public:
    process_crashed(std::vector<std::string> argv, int pid, int signal, bool core_dumped,
                    std::vector<std::string> output_tail, std::string crash_stack = {},
                    std::string sanitizer = {}, std::vector<std::string> left_running = {});
    // For warden: a forked child's crash stack as raw addresses, symbolised when what() or
    // crash_stack() is first read (symbols take milliseconds, the first time in a process a
    // hundred): the parent learns of the crash without waiting for them.
    process_crashed(std::vector<std::string> argv, int pid, int signal, bool core_dumped,
                    std::vector<std::string> output_tail,
                    std::shared_ptr<detail::crash_text> crash_frames, std::string sanitizer = {},
                    std::vector<std::string> left_running = {});

    // The message, the output's last lines, then the crash stack.
    const char* what() const noexcept override;
    const std::vector<std::string>& argv() const noexcept { return argv_; }
    int pid() const noexcept { return pid_; }
    int signal() const noexcept { return signal_; }
    std::string signal_name() const; // "SIGSEGV"
    bool core_dumped() const noexcept { return core_dumped_; }
    const std::vector<std::string>& output_tail() const noexcept { return output_tail_; }
    const std::string& crash_stack() const noexcept; // spawn_forked only
    // As process_error::sanitizer(): what() starts with it.
    const std::string& sanitizer() const noexcept { return sanitizer_; }
    // As process_error::left_running().
    const std::vector<std::string>& left_running() const noexcept { return left_running_; }

  private:
    std::vector<std::string> argv_;
    int pid_;
    int signal_;
    bool core_dumped_;
    std::vector<std::string> output_tail_;
    std::string sanitizer_;
    std::vector<std::string> left_running_;
    // Shared by the copies an exception_ptr makes: symbolised once for all of them.
    std::shared_ptr<detail::crash_text> crash_;
};

// An exception escaped the function run by spawn_forked, in the child process.
class remote_error : public std::runtime_error {
  public:
    remote_error(std::string type_name, std::string what, std::string stacktrace,
                 std::string sanitizer = {}, std::vector<std::string> left_running = {});
    const std::string& type_name() const noexcept { return type_name_; }
    const std::string& remote_what() const noexcept { return what_; }
    const std::string& stacktrace() const noexcept { return stacktrace_; }
    // As process_error::sanitizer(): what() starts with it.
    const std::string& sanitizer() const noexcept { return sanitizer_; }
    // As process_error::left_running().
    const std::vector<std::string>& left_running() const noexcept { return left_running_; }

  private:
    std::string type_name_;
    std::string what_;
    std::string stacktrace_;
    std::string sanitizer_;
    std::vector<std::string> left_running_;
};

// process::wait_for_line ran out of time; carries the output seen so far.
class timeout_error : public std::runtime_error {
  public:
    timeout_error(const std::string& what, std::vector<std::string> output_tail);
    const std::vector<std::string>& output_tail() const noexcept { return output_tail_; }

  private:
    std::vector<std::string> output_tail_;
};

} // namespace warden
