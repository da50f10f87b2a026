#pragma once

// A supervised subprocess or forked child, from the moment it runs until it is reaped and
// reported. Private to src/; docs/processes.md tells the whole story.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <warden/detail/child.hpp>
#include <warden/detail/function.hpp>
#include <warden/errors.hpp>
#include <warden/options.hpp>

#include "body_outcome.hpp"
#include "descendants.hpp"
#include "line_matcher.hpp"
#include "sanitizer_report.hpp"

namespace warden {
class process;
}

namespace warden::detail {

class supervisor_core;

// An owned file descriptor.
class unique_fd {
  public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept
        : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept
        : fd_(other.release()) {}
    unique_fd& operator=(unique_fd&& other) noexcept;
    ~unique_fd();
    int get() const noexcept { return fd_; }
    int release() noexcept;
    void reset() noexcept;

  private:
    int fd_ = -1;
};

// `fd` itself if it is above 2 (or -1), else a close-on-exec copy above 2 with `fd` closed (-1
// and errno if that fails). In a program that closed its stdin, stdout or stderr, a new
// descriptor takes the lowest free number: a pipe end there would be overwritten or closed by
// a child setting up its own 0-2, and the parent's writes to stderr would land in it.
int above_stdio(int fd) noexcept;

// pipe2(O_CLOEXEC), so that no other spawn, fork+exec or posix_spawn inherits either end
// unless it asks for it, both ends above 2 (above_stdio); throws spawn_error naming `what`
// when the process is out of fds.
struct pipe_pair {
    unique_fd read;
    unique_fd write;
};
pipe_pair make_pipe(const char* what);

// pidfd_open(2), above 2: the descriptor warden waits on for the child's exit.
int open_pidfd(int pid) noexcept;

// The state of one process, shared by its `warden::process`, the handlers of its pending
// operations and its cancel action.
//
//   state      | how it gets there                     | what runs
//   -----------+---------------------------------------+---------------------------------------
//   running    | start()                               | exit wait on the pidfd, pipe readers
//   cancelling | cancel action: SIGTERM to the group   | + kill timer (SIGKILL at cancel_grace)
//   exited     | pidfd readable: waitpid (reaped)      | readers drain what is left, then stop
//   finished   | both readers stopped: finish()        | nothing; child_finished() was called
//
// Threads: every Asio object here lives on the supervisor's executor and is touched only in
// its handlers. That executor runs one handler at a time (the supervisor's own io_context has
// one thread; a caller's executor must be a strand if its context has several, as for
// coroutine children), so the handlers need no lock among themselves. `mutex_` guards what
// other threads read (tail, waiters, reaped/status, outcome). Two things are done off the
// executor: sending signals, under `mutex_` and only while not reaped, so a signal can never
// reach a recycled pid; and matching regex waiters, on the line matcher's thread, which holds
// no lock of ours while it matches and posts its verdicts back to the executor.
//
// No Asio object here outlives finish(), and the state holds no strand: a process object is
// destroyed after the supervisor's io_context, and an Asio strand or I/O object must not be.
class process_state : public std::enable_shared_from_this<process_state> {
  public:
    using duration = std::chrono::steady_clock::duration;

    process_state(std::shared_ptr<supervisor_core> core, std::shared_ptr<task_state<void>> record,
                  int pid, std::vector<std::string> argv, std::size_t tail_limit,
                  std::string lineage = {});
    ~process_state();
    process_state(const process_state&) = delete;
    process_state& operator=(const process_state&) = delete;

    // Takes the descriptors and starts the exit wait and the readers. `report` and `crash`
    // are the forked child's failure and crash pipes, empty for spawn_process. The cancel
    // action must be armed before: the child may be finished by the time start() returns.
    void start(unique_fd pidfd, unique_fd output, unique_fd report, unique_fd crash);

    // The cancel action (any thread, also right before _Exit): SIGTERM to the process group
    // now, SIGKILL after cancel_grace.
    void request_cancel();

    int pid() const noexcept { return pid_; }
    const std::string& name() const noexcept;
    const std::shared_ptr<task_state<void>>& record() const noexcept { return record_; }
    supervisor_core& core() const noexcept { return *core_; }
    std::vector<std::string> output_tail() const;
    std::optional<int> wait_status() const;

    // Completes `w` at once from the tail or the outcome, or registers it for new lines; a
    // coroutine waiter also gets its timeout timer.
    void add_waiter(const std::shared_ptr<line_waiter>& w, std::optional<duration> timeout);
    // Takes out a waiter its claimer completes (timeout, cancellation).
    void remove_waiter(const line_waiter* w);
    // Posts the cancellation of a waiter's timer to the executor.
    void cancel_waiter_timer(const std::shared_ptr<line_waiter>& w);
    std::exception_ptr timeout_for(const line_waiter& w, duration timeout) const;
    // Abandons what the line matcher is doing, ends its regex waiters, joins its thread.
    // Before the supervisor's io_context stops: the matcher posts its verdicts there.
    void stop_matching() noexcept;

  private:
    struct pipe_reader {
        std::optional<boost::asio::posix::stream_descriptor> pipe;
        std::vector<char> buffer;
        bool reading = false;
        bool lines = false; // output pipe: split into lines; report pipe: keep bytes
    };

    // Initiates the exit wait and the pipe reads, on the spawning thread, under `beginning_`.
    void begin();
    // Called first by every completion handler: one that runs on the I/O thread before
    // begin() has finished on the spawning thread waits for it here.
    void wait_for_begin();
    void read_next(pipe_reader& r);
    void on_read(pipe_reader& r, const boost::system::error_code& ec, std::size_t n);
    void drain(pipe_reader& r);
    void deliver(pipe_reader& r, const char* data, std::size_t n);
    void consume_output(const char* data, std::size_t n);
    void end_line();
    void push_line(std::string line);
    // Regex waiters are matched on the line matcher's thread, never on the executor nor under
    // mutex_: a pattern can take exponential time and, on a long line, more stack than the
    // I/O thread has. Caller holds mutex_. False: too many lines already wait for it.
    bool submit_to_matcher_locked(std::shared_ptr<const std::string> line,
                                  std::vector<std::shared_ptr<line_waiter>> waiters);
    // On the executor, once the matcher's thread has ended for want of lines (the process has
    // ended and its last regex waiter has its verdict): joins it.
    void join_retired_matcher() noexcept;
    // The matcher's verdict, on the executor: claims and completes the waiter.
    void settle(match_verdict verdict);
    void arm_waiter_timer(const std::shared_ptr<line_waiter>& w, duration timeout);
    void wait_exit();
    // The child has exited (a zombie now, or reaped elsewhere), whatever the pidfd said.
    bool has_exited() const noexcept;
    void on_exit_ready(const boost::system::error_code& ec);
    // The child is dead and unreaped: its descendants still here go (descendants.hpp).
    // False if it could not look for them (no subreaper), and so did not signal the group.
    bool end_descendants();
    void arm_kill_timer();
    void maybe_finish();
    void finish();
    body_outcome make_outcome(const std::string& crash);
    std::exception_ptr ended_error(const line_waiter& w) const; // caller holds mutex_
    // Signals the child's group. With `note_below`, the processes below the child are noted
    // first (noted_descendants), for the sweep at its end.
    void signal_group_locked(int sig, bool note_below = true);
    std::vector<std::string> tail_locked() const;

    const std::shared_ptr<supervisor_core> core_;
    const std::shared_ptr<task_state<void>> record_;
    const std::vector<std::string> argv_; // for reports
    const std::size_t tail_limit_;
    const boost::asio::any_io_executor executor_;
    const int pid_;
    const std::string lineage_; // its WARDEN_LINEAGE token

    // Executor only.
    std::optional<boost::asio::posix::stream_descriptor> exit_; // the pidfd
    std::optional<boost::asio::steady_timer> kill_timer_;
    pipe_reader output_;
    pipe_reader report_;
    unique_fd crash_;
    std::string partial_;          // the line being read
    std::size_t partial_cut_ = 0;  // bytes of it dropped past max_line_bytes
    std::string report_bytes_;     // the forked child's failure message
    std::size_t report_total_ = 0; // bytes seen on the report pipe, kept or not
    sanitizer_scanner sanitizer_;  // every output line, for make_outcome
    bool exited_ = false;
    bool finishing_ = false;
    bool killed_ = false;                   // SIGKILL sent by the kill timer
    std::vector<std::string> left_running_; // descendants found running at its end, killed

    std::mutex beginning_;
    mutable std::mutex mutex_;
    std::deque<std::string> tail_;
    std::vector<std::shared_ptr<line_waiter>> waiters_;
    std::unique_ptr<line_matcher> matcher_; // created by the first regex waiter
    bool reaped_ = false;
    bool cancel_sent_ = false; // SIGTERM sent before the child was reaped
    bool cancelled_ = false;   // the outcome is "cancelled": cancel_sent_ when it was reaped
    std::optional<int> status_;
    int reap_errno_ = 0;
    noted_descendants noted_below_; // by signal_group_locked, for end_descendants
    bool finished_ = false;
    body_outcome outcome_ = body_outcome::returned();
};

// What spawn_process hands to posix_spawn, once the options have been checked.
struct launch_plan {
    std::string program;          // the file to execute (resolved in PATH if it has no slash)
    std::vector<std::string> env; // "NAME=value", when replace_env
    bool replace_env = false;
    std::optional<std::string> cwd;
};
// Throws spawn_error naming the bad argument; starts nothing.
launch_plan plan_launch(const process_options& options);
// posix_spawn with stdout and stderr on `output_fd`, stdin on /dev/null, no other fd, its own
// process group, default signals, and `origin_entry` ("WARDEN_ORIGIN=...", unless empty) in
// place of any WARDEN_ORIGIN of its environment, `lineage_entry` ("WARDEN_LINEAGE=...") in
// place of any WARDEN_LINEAGE. Returns 0 or the errno.
int launch(const launch_plan& plan, const std::vector<std::string>& argv, int output_fd, int& pid,
           const std::string& origin_entry = {}, const std::string& lineage_entry = {});
// What to say when launch() returned E2BIG: the argument or variable longer than exec takes,
// or else the sizes of argv and the environment against exec's limit.
struct too_long_input {
    std::string argument; // "argv[i]", "env" or "argv"
    std::string detail;
};
too_long_input exec_too_long(const launch_plan& plan, const std::vector<std::string>& argv,
                             const std::string& origin_entry, const std::string& lineage_entry);
// The "WARDEN_ORIGIN=<value>" entry for a child `record` just admitted by `core`; empty when
// out of memory (the child then goes without, rather than the admitted record being lost).
std::string origin_entry(const supervisor_core& core, const child_record& record) noexcept;
// True for an environment entry "WARDEN_ORIGIN=...".
bool is_origin_entry(const char* entry) noexcept;

// The child runs: watch it. Throws spawn_error (with the child killed and reaped, and the
// record ended as cancelled) if it cannot be watched.
process& adopt(const std::shared_ptr<supervisor_core>& core,
               const std::shared_ptr<task_state<void>>& record, std::vector<std::string> argv,
               std::size_t tail_limit, int pid, unique_fd output, unique_fd report, unique_fd crash,
               std::string lineage = {});
// Ends an admitted child that never ran, as cancelled (the caller throws the reason).
void end_failed_spawn(supervisor_core& core, child_record& record);

// The outcome of a forked child that exited with a non-zero code (forked.cpp): the decoded
// remote_error, a remote_error saying the message is unreadable, or a process_error; each
// carries `sanitizer`, the summary of a sanitizer report in its output, if any, and
// `left_running`, the descendants killed at its end.
std::exception_ptr forked_exit_outcome(const std::vector<std::string>& argv, int pid, int code,
                                       std::string_view report, std::size_t report_total,
                                       std::vector<std::string> tail, std::string sanitizer = {},
                                       std::vector<std::string> left_running = {});

} // namespace warden::detail
