// A running child process: its exit wait, pipe reads, cancellation, its descendants' end and
// its outcome. The states are in process_state.hpp.

#include <warden/process.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include <fmt/format.h>

#include "core.hpp"
#include "crash_handler.hpp"
#include "crash_text.hpp"
#include "descendants.hpp"
#include "log.hpp"
#include "process_state.hpp"
#include "remote_failure.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace warden::detail {

namespace {

// Reads of this size keep up with a child writing flat out (a 10 MB writer needs ~600).
constexpr std::size_t read_buffer_size = 16 * 1024;
// After the exit, what is still in a pipe is read without waiting, up to this much: a
// grandchild that keeps the pipe open and writes flat out cannot hold up the report.
constexpr std::size_t max_drain_bytes = 4 * 1024 * 1024;
// How long the end of a child may wait for its killed descendants to die, on the I/O thread.
// SIGKILL takes a millisecond or so; only a process stuck in the kernel takes longer.
constexpr std::chrono::milliseconds descendants_budget{250};
// The crash dump is one write of at most 129 pointers; anything longer is not ours.
constexpr std::size_t max_crash_bytes = 4096;

} // namespace

process_state::process_state(std::shared_ptr<supervisor_core> core,
                             std::shared_ptr<task_state<void>> record, int pid,
                             std::vector<std::string> argv, std::size_t tail_limit,
                             std::string lineage)
    : core_(std::move(core))
    , record_(std::move(record))
    , argv_(std::move(argv))
    , tail_limit_(tail_limit)
    , executor_(core_->executor())
    , pid_(pid)
    , lineage_(std::move(lineage)) {}

process_state::~process_state() {
    // After the supervisor's shutdown, which stopped the matcher already unless a waiter came
    // later: its verdicts would go to an executor that may be gone.
    if (matcher_)
        matcher_->abandon();
}

const std::string& process_state::name() const noexcept {
    return record_->name();
}

namespace {

// Closes a descriptor the io_context watches, removing its epoll registration first. Asio
// leaves that to close(), which removes it only when the last reference to the open file
// goes, and a child being spawned holds a copy of every descriptor for a moment: the stale
// registration then reported readiness for whatever descriptor took the number next. With
// a pidfd that was a process's exit before it had exited, and the process was killed
// (test: "200 short processes with one failing give exactly one failure and leave nothing").
void close_watched(std::optional<asio::posix::stream_descriptor>& watched) noexcept {
    if (!watched)
        return;
    const int fd = watched->release(); // deregisters it from the reactor
    watched.reset();
    if (fd >= 0)
        ::close(fd);
}

} // namespace

void process_state::start(unique_fd pidfd, unique_fd output, unique_fd report, unique_fd crash) {
    // Each fd is released only once its descriptor object owns it: a registration that throws
    // leaves it to the unique_fd.
    exit_.emplace(executor_, pidfd.get());
    pidfd.release();
    output_.pipe.emplace(executor_, output.get());
    output.release();
    output_.lines = true;
    output_.buffer.resize(read_buffer_size);
    if (report.get() >= 0) {
        report_.pipe.emplace(executor_, report.get());
        report.release();
        report_.buffer.resize(read_buffer_size);
    }
    crash_ = std::move(crash);
    begin();
}

// The waits are initiated here, on the spawning thread, rather than posted to the executor:
// that hand-off was one of the two thread switches per process that made spawn + wait slower
// than posix_spawn + waitpid (bench/README.md). From here on the objects are touched only by
// completion handlers on the executor, each of which first waits for this to finish.
void process_state::begin() {
    std::lock_guard lock(beginning_);
    wait_exit();
    output_.reading = true;
    read_next(output_);
    if (report_.pipe) {
        report_.reading = true;
        read_next(report_);
    }
}

void process_state::wait_for_begin() {
    std::lock_guard lock(beginning_);
}

void process_state::read_next(pipe_reader& r) {
    r.pipe->async_read_some(
        asio::buffer(r.buffer),
        [self = shared_from_this(), &r](const boost::system::error_code& ec, std::size_t n) {
            self->on_read(r, ec, n);
        });
}

void process_state::on_read(pipe_reader& r, const boost::system::error_code& ec, std::size_t n) {
    wait_for_begin();
    if (n > 0)
        deliver(r, r.buffer.data(), n);
    if (!ec && !exited_) {
        read_next(r);
        return;
    }
    // The child is gone (its exit cancelled this read, or the read completed meanwhile): what
    // it wrote before dying is in the pipe; take it without waiting for an EOF that a
    // grandchild holding the write end could delay forever.
    if (exited_ && ec != asio::error::eof)
        drain(r);
    r.reading = false;
    close_watched(r.pipe);
    // The supervisor keeps a finished process until its own end (the caller's `process&`
    // stays valid): without this, each one it ever ran would keep its 16 KiB read buffer.
    // Test: "a finished process keeps no read buffer".
    std::vector<char>().swap(r.buffer);
    maybe_finish();
}

void process_state::drain(pipe_reader& r) {
    boost::system::error_code ec;
    r.pipe->non_blocking(true, ec);
    if (ec)
        return;
    for (std::size_t total = 0; total < max_drain_bytes;) {
        const std::size_t n = r.pipe->read_some(asio::buffer(r.buffer), ec);
        if (n > 0) {
            deliver(r, r.buffer.data(), n);
            total += n;
        }
        if (ec)
            return; // would_block: empty; eof: closed
    }
}

void process_state::deliver(pipe_reader& r, const char* data, std::size_t n) {
    if (r.lines) {
        consume_output(data, n);
        return;
    }
    report_total_ += n;
    if (report_bytes_.size() < max_remote_failure_size)
        report_bytes_.append(data, std::min(n, max_remote_failure_size - report_bytes_.size()));
}

bool process_state::has_exited() const noexcept {
    siginfo_t info{};
    // WNOWAIT: the reap itself comes later, once the group and the descendants are ended.
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == -1)
        return true; // ECHILD: reaped elsewhere (SIGCHLD ignored, a waitpid(-1))
    return info.si_pid != 0;
}

void process_state::wait_exit() {
    exit_->async_wait(asio::posix::descriptor_base::wait_read,
                      [self = shared_from_this()](const boost::system::error_code& ec) {
                          self->on_exit_ready(ec);
                      });
}

void process_state::on_exit_ready(const boost::system::error_code& ec) {
    wait_for_begin();
    if (ec == asio::error::operation_aborted)
        return;
    if (!ec && !has_exited()) {
        // Readable, yet running: nothing may be killed on the word of the descriptor alone.
        wait_exit();
        return;
    }
    const bool group_ended = !ec && end_descendants();
    {
        std::lock_guard lock(mutex_);
        // The reactor cannot watch the pidfd (never seen): the child is ended by the SIGKILL
        // below rather than the executor blocked in waitpid on a live process.
        if (ec)
            log().error("{}: cannot wait for pid {} ({}); killing it", name(), pid_, ec.message());
        // No child process is left when its supervisor is gone, and a leader that ended by
        // itself (`sh -c 'server & exit 0'`) or was cancelled may leave members of its group
        // running. Before reaping, the pid cannot be reused, so the group id is still this
        // child's: they go now (end_descendants did it, if it ran). Tests: "a process that
        // exits by itself takes its background jobs with it", "cancellation reaches the
        // children of a shell".
        if (!group_ended)
            signal_group_locked(SIGKILL, false); // no sweep follows
        int status = 0;
        pid_t reaped;
        do
            reaped = ::waitpid(pid_, &status, ec ? 0 : WNOHANG);
        while (reaped == -1 && errno == EINTR);
        if (reaped == 0) {
            // has_exited() said it had: not expected; wait again rather than guess.
            wait_exit();
            return;
        }
        reaped_ = true;
        forget_child(pid_);
        noted_below_.clear(); // noted by a cancel that came while the sweep ran
        cancelled_ = cancel_sent_;
        if (reaped == pid_)
            status_ = status;
        else
            reap_errno_ = errno; // ECHILD: reaped elsewhere (SIGCHLD ignored, waitpid(-1))
    }
    exited_ = true;
    close_watched(exit_);
    kill_timer_.reset();
    for (pipe_reader* r : {&output_, &report_}) {
        if (r->reading) {
            boost::system::error_code ignored;
            r->pipe->cancel(ignored);
        }
    }
    maybe_finish();
}

// Runs before the reap, without mutex_ (it may wait up to descendants_budget for the killed
// to die): the child's pid, hence its group id, cannot be reused meanwhile, so a process in
// that group is surely its descendant. A cancel that comes meanwhile signals a dead leader's
// group, which is harmless. Tests: tests/test_descendants.cpp.
bool process_state::end_descendants() {
    if (!become_subreaper())
        return false;
    descendant_sweep sweep(pid_, lineage_);
    {
        std::lock_guard lock(mutex_);
        sweep.add_noted(noted_below_.release()); // by a cancel's SIGTERM, or the kill timer's
    }
    // Named while they run, before the group's SIGKILL below turns them into zombies.
    sweep.first_round();
    {
        std::lock_guard lock(mutex_);
        // The child is dead, so its group's members that are left are the program's children
        // (the sweep has them) and what is below those: only these are walked, nothing at all
        // for a child that left no group behind.
        noted_below_.note_under(sweep.killed_in_group());
        signal_group_locked(SIGKILL, false);
        sweep.add_noted(noted_below_.release());
    }
    sweep.finish(descendants_budget);
    left_running_ = sweep.left_running();
    if (sweep.unfinished() > 0)
        log().warn("{}: {} descendant(s) killed but not ended within {} ms; reaped once they "
                   "end, at the latest by the supervisor's end",
                   name(), sweep.unfinished(), descendants_budget.count());
    if (left_running_.empty())
        return true;
    const bool cancelled = record_->cancel_requested();
    if (log().should_log(cancelled ? spdlog::level::debug : spdlog::level::warn)) {
        std::string list;
        for (const auto& d : left_running_)
            list += (list.empty() ? "" : ", ") + d;
        log().log(cancelled ? spdlog::level::debug : spdlog::level::warn,
                  "{} (pid {}) ended and left running, killed: {}", name(), pid_, list);
    }
    return true;
}

void process_state::request_cancel() {
    {
        std::lock_guard lock(mutex_);
        if (reaped_ || cancel_sent_)
            return;
        cancel_sent_ = true;
        signal_group_locked(SIGTERM);
    }
    run_soon(executor_, [self = shared_from_this()] { self->arm_kill_timer(); });
}

void process_state::arm_kill_timer() {
    if (exited_)
        return;
    kill_timer_.emplace(executor_, core_->cancel_grace());
    kill_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (ec)
            return;
        std::lock_guard lock(self->mutex_);
        if (!self->reaped_) {
            self->killed_ = true;
            self->signal_group_locked(SIGKILL);
        }
    });
}

void process_state::signal_group_locked(int sig, bool note_below) {
    // A member inside setsid() or setpgid() as the signal comes dies in a group and session of
    // its own, and its zombie has no environment: only a pidfd taken before tells the sweep it
    // was this child's (docs/processes.md, "Descendants"). Stress: `warden_stress --kinds
    // descendants` left one such zombie in about 3,500 runs before.
    if (note_below)
        noted_below_.note(pid_);
    // The child leads its own process group: a shell's children go with it. ESRCH: the group
    // is not there (a forked child between fork and setpgid), so signal the child itself.
    if (::kill(-pid_, sig) == -1 && errno == ESRCH)
        ::kill(pid_, sig);
}

void process_state::maybe_finish() {
    if (exited_ && !output_.reading && !report_.reading && !finishing_)
        finish();
}

void process_state::finish() {
    finishing_ = true;
    if (!partial_.empty() || partial_cut_ > 0)
        end_line();
    std::string crash;
    if (crash_.get() >= 0) {
        char buffer[max_crash_bytes];
        ::fcntl(crash_.get(), F_SETFL, O_NONBLOCK);
        while (crash.size() < max_crash_bytes) {
            const ssize_t n = ::read(crash_.get(), buffer, max_crash_bytes - crash.size());
            if (n > 0)
                crash.append(buffer, static_cast<std::size_t>(n));
            else if (n == 0 || errno != EINTR)
                break;
        }
        crash_.reset();
    }
    auto outcome = make_outcome(crash);

    std::vector<std::pair<std::shared_ptr<line_waiter>, std::exception_ptr>> ended;
    {
        std::lock_guard lock(mutex_);
        finished_ = true;
        outcome_ = outcome;
        // A regex waiter ends after the matcher has tested every line it was given: a line
        // printed before the exit still wins, as it does for a plain pattern.
        std::vector<std::shared_ptr<line_waiter>> regex_waiters;
        for (auto& w : waiters_) {
            if (w->pattern)
                regex_waiters.push_back(w);
            else if (w->claim())
                ended.emplace_back(w, ended_error(*w));
        }
        waiters_.clear();
        if (!regex_waiters.empty())
            submit_to_matcher_locked(nullptr, std::move(regex_waiters));
        // No line comes any more: the matcher's thread ends once its queue is done.
        if (matcher_)
            matcher_->retire_when_idle();
    }
    // Every Asio object of this state is gone or idle now, and the waiters' timers are
    // cancelled before child_finished() can let the supervisor's destructor stop the
    // io_context: no handler of ours is left behind it.
    for (auto& [w, error] : ended)
        if (w->timer)
            w->timer->cancel();
    process_ending ending{pid_, wait_status(), output_tail(), left_running_};
    // The supervisor records the outcome before any waiter resumes, as it does for tasks.
    core_->child_finished(*record_, outcome, &ending);
    for (auto& [w, error] : ended)
        w->complete(error, {});
}

body_outcome process_state::make_outcome(const std::string& crash) {
    std::vector<std::string> tail;
    bool cancelled;
    std::optional<int> status;
    int reap_errno;
    {
        std::lock_guard lock(mutex_);
        tail = tail_locked();
        cancelled = cancelled_;
        status = status_;
        reap_errno = reap_errno_;
    }
    // A sanitizer report is a bug whatever the exit status: UBSan goes on and exits 0, and a
    // program may _exit(0) from a handler. Also after a cancellation, since an error found
    // during shutdown is still an error, and a service that reported one while it ran is
    // typically only ever ended by cancellation; but not a LeakSanitizer report then: a program
    // stopped by SIGTERM in the middle of its work, that exits from its handler, has live
    // allocations that its normal shutdown would have freed (docs/decisions.md).
    std::string sanitizer = sanitizer_.summary();
    if (cancelled && sanitizer_.sanitizer() == "LeakSanitizer")
        sanitizer.clear();
    // A cancelled process ends as cancelled whatever its status: SIGTERM makes most programs
    // exit non-zero or die by the signal, and that is obedience, not failure.
    if (cancelled && sanitizer.empty()) {
        const auto grace = core_->options().cancel_grace.count();
        return body_outcome::stopped(
            fmt::format("warden: process {} (pid {}) was cancelled{}", name(), pid_,
                        killed_ ? fmt::format(" and killed by SIGKILL after the {} ms grace", grace)
                                : std::string()));
    }
    if (!status)
        return body_outcome::threw(std::make_exception_ptr(std::system_error(
            reap_errno, std::system_category(),
            fmt::format("warden: process {} (pid {}) ended but its exit status is lost (reaped "
                        "elsewhere: is SIGCHLD ignored?)",
                        name(), pid_))));
    const int s = *status;
    if (WIFEXITED(s)) {
        const int code = WEXITSTATUS(s);
        if (code == 0 && sanitizer.empty())
            return body_outcome::returned();
        if (record_->kind() == child_kind::forked && code != 0)
            return body_outcome::threw(forked_exit_outcome(argv_, pid_, code, report_bytes_,
                                                           report_total_, std::move(tail),
                                                           std::move(sanitizer), left_running_));
        return body_outcome::threw(std::make_exception_ptr(process_error(
            argv_, pid_, code, std::move(tail), std::move(sanitizer), left_running_)));
    }
    if (WIFSIGNALED(s))
        return body_outcome::threw(std::make_exception_ptr(
            process_crashed(argv_, pid_, WTERMSIG(s), WCOREDUMP(s) != 0, std::move(tail),
                            std::make_shared<crash_text>(crash_dump_frames(crash)),
                            std::move(sanitizer), left_running_)));
    return body_outcome::threw(std::make_exception_ptr(
        process_error(argv_, pid_, -1, std::move(tail), std::move(sanitizer), left_running_)));
}

void end_failed_spawn(supervisor_core& core, child_record& record) {
    // Stopped, so the supervisor counts it as cancelled, not failed: the caller gets the
    // spawn_error itself.
    core.child_finished(record, body_outcome::stopped("warden: spawn failed"));
}

process& adopt(const std::shared_ptr<supervisor_core>& core,
               const std::shared_ptr<task_state<void>>& record, std::vector<std::string> argv,
               std::size_t tail_limit, int pid, unique_fd output, unique_fd report, unique_fd crash,
               std::string lineage) {
    auto give_up = [&](int error, const char* what) -> spawn_error {
        // Nothing may be left running: the child goes, and is reaped, before the throw.
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) == -1 && errno == EINTR) {
        }
        forget_child(pid);
        end_failed_spawn(*core, *record);
        return spawn_error(std::error_code(error, std::system_category()), what,
                           fmt::format("cannot watch child {}", record->name()));
    };
    // Before anything can reap it: a sweep of a sibling's descendants must never take it for
    // an orphan.
    note_child(pid);
    unique_fd pidfd(open_pidfd(pid));
    if (pidfd.get() < 0)
        throw give_up(errno, "pidfd_open");
    auto state = std::make_shared<process_state>(core, record, pid, std::move(argv), tail_limit,
                                                 std::move(lineage));
    if (log().should_log(spdlog::level::debug))
        log().debug("{}: pid {}", record->name(), pid);
    // Armed before start(): a quick child can be reaped and finished on the I/O thread before
    // start() returns, and an action armed after child_finished() would never be dropped (it
    // holds the state, which holds the record: a cycle). Test: "a process that exits 0
    // succeeds" under LeakSanitizer.
    core->arm_cancel(*record, [state] { state->request_cancel(); });
    try {
        state->start(std::move(pidfd), std::move(output), std::move(report), std::move(crash));
    } catch (const boost::system::system_error& e) {
        throw give_up(e.code().value(), "io_context");
    }
    return core->own_process(std::make_unique<process>(state), state);
}

} // namespace warden::detail
