// spawn_forked: the child side (fork, run, report) and the parent's reading of the outcome.
//
// The wire is three pipes, each created close-on-exec before fork():
//   output   the child's stdout and stderr, read like a subprocess's;
//   failure  an exception that escaped f, as one encode_remote_failure() message
//            (remote_failure.hpp: "WRDF", version, length-prefixed fields), then exit code 70;
//   crash    the raw frames install_crash_handlers() writes on SIGSEGV & co., then death by
//            the signal.
// The parent reads the failure pipe while the child runs (a message may exceed the pipe's
// buffer) and the crash pipe after the exit (one write below PIPE_BUF). It trusts neither:
// see forked_exit_outcome().

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/details/console_globals.h>

#include "core.hpp"
#include "crash_handler.hpp"
#include "descendants.hpp"
#include "forked.hpp"
#include "process_state.hpp"
#include "registry.hpp"
#include "remote_failure.hpp"
#include "stack.hpp"
#include "throw_site.hpp"

namespace warden::detail {

namespace {

// EX_SOFTWARE: "internal software error". Any non-zero code would do; the message decides.
constexpr int exception_exit_code = 70;

// Set in the child only, before f runs.
int failure_fd = -1;
// The child's stdout buffer; unused in the parent.
char child_stdout_buffer[BUFSIZ];

void write_all(int fd, const std::string& bytes) noexcept {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n > 0)
            done += static_cast<std::size_t>(n);
        else if (n == -1 && errno != EINTR)
            return; // the parent is gone; nothing to tell
    }
}

// Inside the catch block of the child: the exception in flight, to the failure pipe.
void send_current_exception(int fd) noexcept {
    try {
        remote_failure failure;
        failure.type_name = current_exception_type_name();
        try {
            throw;
        } catch (const std::exception& e) {
            try {
                failure.what = e.what();
            } catch (...) {
                failure.what = failure.type_name + " (its what() threw)";
            }
        } catch (...) {
            failure.what = failure.type_name;
        }
        // Where it was thrown, recorded by the throw hook (throw_site.hpp); not the stack here,
        // which shows only how f was reached, as the parent's spawn stack already does.
        failure.stacktrace = throw_stack_text(std::current_exception());
        write_all(fd, encode_remote_failure(failure));
    } catch (...) {
        // Out of memory while encoding: the exit code alone will tell.
    }
}

void flush_output() noexcept {
    try {
        std::cout.flush();
        std::cerr.flush();
    } catch (...) {
    }
    std::fflush(stdout);
    std::fflush(stderr);
}

// Where the forked child keeps its own pipes, so that everything above them can be closed.
constexpr int failure_pipe_fd = STDERR_FILENO + 1;
constexpr int crash_pipe_fd = STDERR_FILENO + 2;

// No descriptor of the parent but 0-2 may reach a child (docs/processes.md), and a fork copies
// them all: the application's files and sockets, warden's epoll, eventfd and timerfd, other
// children's pidfds and pipe ends (a sibling's pipe held open here would also delay its EOF),
// libunwind's pipe. So the child's two pipes move to 3 and 4 and everything above goes.
// libunwind keeps the numbers of its pipe, which a later open() in f may reuse, and reads and
// writes it during unw_backtrace: the child's captures stop using libunwind first (test: "stack
// capture works in a forked child and touches none of its descriptors"). Async-signal-safe:
// fcntl, dup3, close_range through closefrom.
void keep_only_own_fds(int failure, int crash) noexcept {
    stop_using_libunwind();
    if (crash == failure_pipe_fd)
        crash = ::fcntl(crash, F_DUPFD_CLOEXEC, crash_pipe_fd + 1);
    if (failure != failure_pipe_fd)
        ::dup3(failure, failure_pipe_fd, O_CLOEXEC);
    if (crash != crash_pipe_fd)
        ::dup3(crash, crash_pipe_fd, O_CLOEXEC);
    ::closefrom(crash_pipe_fd + 1);
}

// Puts `origin` ("WARDEN_ORIGIN=...") and `lineage` ("WARDEN_LINEAGE=...") in the environment
// in place of any of theirs, skipping an empty one, by a new array rather than setenv():
// setenv takes glibc's environment lock, which a thread of the parent may have held at the
// fork. The array and the entries live as long as the child.
void put_in_environment(char* origin, char* lineage) noexcept {
    std::size_t n = 0;
    while (environ[n] != nullptr)
        ++n;
    auto** env = static_cast<char**>(std::malloc((n + 3) * sizeof(char*)));
    if (env == nullptr)
        return;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (!(*origin != '\0' && is_origin_entry(environ[i])) &&
            !(*lineage != '\0' && is_lineage_entry(environ[i])))
            env[kept++] = environ[i];
    if (*origin != '\0')
        env[kept++] = origin;
    if (*lineage != '\0')
        env[kept++] = lineage;
    env[kept] = nullptr;
    environ = env;
}

// The child of fork() in a process that may have other threads: those threads are gone and
// any lock they held stays locked here. So nothing below takes a warden mutex or logs; stdio
// is safe only because the parent held the stdout and stderr locks across fork().
[[noreturn]] void run_child(unique_function<void()>& body, pipe_pair& output, pipe_pair& failure,
                            pipe_pair& crash, std::string& origin, std::string& lineage,
                            bool record_throws) noexcept {
    ::setpgid(0, 0);
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig)
        ::sigaction(sig, &default_action, nullptr); // fails harmlessly for SIGKILL, SIGSTOP
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);

    // Every pipe end is above 2 (make_pipe), so nothing set up here overwrites one. /dev/null
    // opens on 0 itself when the parent had closed its stdin.
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null == STDIN_FILENO) {
        ::fcntl(null, F_SETFD, 0);
    } else if (null >= 0) {
        ::dup2(null, STDIN_FILENO);
        ::close(null);
    }
    ::dup2(output.write.get(), STDOUT_FILENO);
    ::dup2(output.write.get(), STDERR_FILENO);
    // A pipe would make stdout fully buffered, and a crash would lose everything f printed;
    // line-buffered, as on a terminal, it loses at most a partial line. The parent flushed
    // stdout before fork(), so nothing is buffered. A buffer of our own, not nullptr: glibc
    // then resets the stream's write pointers, without which a stream the parent had already
    // used stays effectively fully buffered (test: "what a forked child printed before
    // crashing is in the report").
    std::setvbuf(stdout, child_stdout_buffer, _IOLBF, sizeof child_stdout_buffer);
    output.write.release();
    output.read.release();
    failure.read.release();
    crash.read.release();
    keep_only_own_fds(failure.write.release(), crash.write.release());
    failure_fd = failure_pipe_fd;
    install_crash_handlers(crash_pipe_fd);
    // A warden in f, and the programs f starts, see where this child came from; and the
    // programs f starts carry the parent's token, by which their orphans are attributed.
    put_in_environment(origin.data(), lineage.data());
    if (!origin.empty()) {
        try {
            set_outer_origin(origin.substr(origin_variable.size() + 1));
        } catch (...) {
            // Out of memory: reports in f lack the outer origin, and that is all.
        }
    }
    // Under capture::stacktrace, as the parent's own children.
    if (record_throws)
        record_every_throw();
    // This thread is a copy of the spawning one, which may have been running a child of the
    // parent process: that record is a copy too, frozen mid-run, perhaps mid-cancellation.
    // A supervisor made in f has no parent child here (its origin reaches it through
    // WARDEN_ORIGIN instead). Test: "a supervisor made in a forked child that a cancelled
    // child spawned starts open".
    const current_child_scope no_running_child(nullptr);

    try {
        body();
    } catch (...) {
        flush_output();
        send_current_exception(failure_fd);
        ::_exit(exception_exit_code);
    }
    flush_output();
    // _exit: the parent's atexit handlers and static destructors are not this process's.
    ::_exit(0);
}

remote_error unreadable(const std::vector<std::string>& argv, int pid, int code, std::size_t bytes,
                        const std::string& why, std::string sanitizer,
                        std::vector<std::string> left_running) {
    return remote_error("<unreadable failure message>",
                        fmt::format("forked child {} (pid {}) exited with code {} and sent {} "
                                    "bytes that are not a failure message warden can read: {}",
                                    argv.empty() ? std::string() : argv.front(), pid, code, bytes,
                                    why),
                        {}, std::move(sanitizer), std::move(left_running));
}

} // namespace

int forked_failure_fd() noexcept {
    return failure_fd;
}

// An exception that escaped f stays a remote_error when a sanitizer report came first (UBSan
// goes on after its report): its type is what a caller catches, and what() leads with the
// report all the same.
std::exception_ptr forked_exit_outcome(const std::vector<std::string>& argv, int pid, int code,
                                       std::string_view report, std::size_t report_total,
                                       std::vector<std::string> tail, std::string sanitizer,
                                       std::vector<std::string> left_running) {
    if (report_total == 0)
        return std::make_exception_ptr(process_error(
            argv, pid, code, std::move(tail), std::move(sanitizer), std::move(left_running)));
    if (report_total > max_remote_failure_size)
        return std::make_exception_ptr(unreadable(
            argv, pid, code, report_total,
            fmt::format("larger than the {} bytes a message may have", max_remote_failure_size),
            std::move(sanitizer), std::move(left_running)));
    auto decoded = decode_remote_failure(report);
    if (!decoded.failure)
        return std::make_exception_ptr(unreadable(argv, pid, code, report_total, decoded.error,
                                                  std::move(sanitizer), std::move(left_running)));
    auto& f = *decoded.failure;
    return std::make_exception_ptr(remote_error(std::move(f.type_name), std::move(f.what),
                                                std::move(f.stacktrace), std::move(sanitizer),
                                                std::move(left_running)));
}

} // namespace warden::detail

namespace warden {

process& supervisor::start_forked(detail::unique_function<void()> body, spawn_options options,
                                  const std::source_location& where) {
    auto output = detail::make_pipe("output pipe");
    auto failure = detail::make_pipe("failure pipe");
    auto crash = detail::make_pipe("crash pipe");
    auto record = std::make_shared<detail::task_state<void>>();
    core_->admit(record, child_kind::forked, std::move(options.name), where);
    auto origin = detail::origin_entry(*core_, *record);
    // Before the fork, so that none of the child's orphans goes to init.
    detail::become_subreaper();
    auto lineage = detail::new_lineage_token();
    auto lineage_entry = detail::lineage_entry(lineage);

    // Whatever the parent buffered is written once, by the parent; and no other thread holds
    // the stdio locks at the fork, so the child can print. Nor spdlog's console lock, which
    // warden's log lines take before stderr's (in that order here too): the child can log.
    // Test: "a log line another thread is writing when a forked child starts does not hold
    // up the child's".
    std::fflush(stdout);
    std::fflush(stderr);
    auto& console = spdlog::details::console_mutex::mutex();
    console.lock();
    ::flockfile(stdout);
    ::flockfile(stderr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::funlockfile(stderr);
        ::funlockfile(stdout);
        console.unlock();
        detail::run_child(body, output, failure, crash, origin, lineage_entry,
                          core_->options().capture == capture::stacktrace);
    }
    const int fork_errno = errno;
    ::funlockfile(stderr);
    ::funlockfile(stdout);
    console.unlock();
    if (pid < 0) {
        detail::end_failed_spawn(*core_, *record);
        throw spawn_error(std::error_code(fork_errno, std::system_category()), "fork",
                          fmt::format("forked child {}", record->name()));
    }
    // The child does the same; whichever runs first, the group exists before a signal is sent.
    ::setpgid(pid, pid);
    output.write.reset();
    failure.write.reset();
    crash.write.reset();
    return detail::adopt(core_, record, {record->name()}, process_options{}.output_tail, pid,
                         std::move(output.read), std::move(failure.read), std::move(crash.read),
                         std::move(lineage));
}

} // namespace warden
