// Supervised subprocesses: launching, exit waits, output capture, cancellation, readiness lines.
//
// Why not Boost.Process v2's launchers (1.81). default_launcher forks, then in the child calls
// the io_context's notify_fork(), which takes Asio's internal mutexes: in a multi-threaded
// parent one may be held by a thread that does not exist in the child, and the child hangs
// before exec (boostorg/process#430, chriskohlhoff/asio#1503). Its close_all() compares each
// whitelisted fd with itself and so never closes the gaps below its error pipe: fds leak
// (fixed upstream in boostorg/process#360, 2024). On exec failure the child calls exit(), which
// runs the parent's atexit handlers in the copy (boostorg/process#514), and the failed child is
// never reaped. vfork_launcher does the same work after vfork(), which is undefined behaviour
// (boostorg/process#314). And its process handle reaps inside async_wait, leaving no moment in
// which the pid is known dead but not yet free: warden needs that moment to signal a process
// group without risking a recycled pid. So warden launches with posix_spawn (glibc runs it as
// clone(CLONE_VM|CLONE_VFORK) + exec, no atfork handlers, exec errors returned, failed children
// reaped) and waits the way Process v2 does on Linux: a pidfd, readable once the child exits,
// watched by the io_context. See docs/processes.md.

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <fmt/format.h>

#include "core.hpp"
#include "crash_handler.hpp"
#include "crash_text.hpp"
#include "descendants.hpp"
#include "log.hpp"
#include "process_state.hpp"
#include "registry.hpp"
#include "remote_failure.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace warden::detail {

namespace {

// Reads of this size keep up with a child writing flat out (a 10 MB writer needs ~600).
constexpr std::size_t read_buffer_size = 16 * 1024;
// A longer line is cut: memory stays bounded by output_tail lines of this size.
constexpr std::size_t max_line_bytes = 64 * 1024;
// After the exit, what is still in a pipe is read without waiting, up to this much: a
// grandchild that keeps the pipe open and writes flat out cannot hold up the report.
constexpr std::size_t max_drain_bytes = 4 * 1024 * 1024;
// How long the end of a child may wait for its killed descendants to die, on the I/O thread.
// SIGKILL takes a millisecond or so; only a process stuck in the kernel takes longer.
constexpr std::chrono::milliseconds descendants_budget{250};
// The crash dump is one write of at most 129 pointers; anything longer is not ours.
constexpr std::size_t max_crash_bytes = 4096;

std::atomic<std::uint64_t> next_process_number{0};

} // namespace

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
    if (this != &other) {
        reset();
        fd_ = other.release();
    }
    return *this;
}

unique_fd::~unique_fd() {
    reset();
}

int unique_fd::release() noexcept {
    return std::exchange(fd_, -1);
}

void unique_fd::reset() noexcept {
    if (fd_ >= 0)
        ::close(std::exchange(fd_, -1));
}

int above_stdio(int fd) noexcept {
    if (fd < 0 || fd > STDERR_FILENO)
        return fd;
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    const int saved_errno = errno;
    ::close(fd);
    errno = saved_errno;
    return moved;
}

pipe_pair make_pipe(const char* what) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw spawn_error(std::error_code(errno, std::system_category()), what,
                          "cannot create a pipe");
    pipe_pair pipe{unique_fd(above_stdio(fds[0])), unique_fd(above_stdio(fds[1]))};
    if (pipe.read.get() < 0 || pipe.write.get() < 0)
        throw spawn_error(std::error_code(errno, std::system_category()), what,
                          "cannot create a pipe");
    return pipe;
}

int open_pidfd(int pid) noexcept {
    // Close-on-exec by definition (pidfd_open(2)).
    return above_stdio(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

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

void process_state::consume_output(const char* data, std::size_t n) {
    while (n > 0) {
        const auto* newline = static_cast<const char*>(std::memchr(data, '\n', n));
        const std::size_t length =
            newline != nullptr ? static_cast<std::size_t>(newline - data) : n;
        const std::size_t room =
            partial_.size() < max_line_bytes ? max_line_bytes - partial_.size() : 0;
        const std::size_t taken = std::min(length, room);
        partial_.append(data, taken);
        partial_cut_ += length - taken;
        if (newline == nullptr)
            return;
        end_line();
        data += length + 1;
        n -= length + 1;
    }
}

void process_state::end_line() {
    if (partial_cut_ == 0 && !partial_.empty() && partial_.back() == '\r')
        partial_.pop_back();
    std::string line = std::move(partial_);
    partial_.clear();
    sanitizer_.feed_line(line);
    if (partial_cut_ > 0) {
        line += fmt::format(" [warden: {} bytes cut]", partial_cut_);
        partial_cut_ = 0;
    }
    push_line(std::move(line));
}

void process_state::push_line(std::string line) {
    if (log().should_log(spdlog::level::debug))
        log().debug("{}: {}", name(), line);
    std::vector<std::pair<std::shared_ptr<line_waiter>, std::exception_ptr>> matched;
    {
        std::lock_guard lock(mutex_);
        std::vector<std::shared_ptr<line_waiter>> regex_waiters;
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            if ((*it)->pattern) {
                regex_waiters.push_back(*it);
                ++it;
                continue;
            }
            if (line.find((*it)->pattern_text) == std::string::npos) {
                ++it;
                continue;
            }
            if ((*it)->claim())
                matched.emplace_back(*it, nullptr);
            it = waiters_.erase(it);
        }
        if (!regex_waiters.empty() &&
            !submit_to_matcher_locked(std::make_shared<const std::string>(line), regex_waiters)) {
            // The matcher is more than max_pending_bytes behind: the pattern is too slow for
            // this output, which it would otherwise have to keep without bound.
            const auto error =
                std::make_exception_ptr(std::regex_error(std::regex_constants::error_complexity));
            for (auto& w : regex_waiters) {
                if (w->claim())
                    matched.emplace_back(w, error);
                std::erase(waiters_, w);
            }
        }
        if (tail_limit_ > 0) {
            tail_.push_back(matched.empty() ? std::move(line) : line);
            while (tail_.size() > tail_limit_)
                tail_.pop_front();
        }
    }
    for (auto& [w, error] : matched) {
        if (w->timer)
            w->timer->cancel();
        w->complete(error, error ? std::string() : line);
    }
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
    if (!ec)
        end_descendants();
    {
        std::lock_guard lock(mutex_);
        if (ec) {
            // The reactor cannot watch the pidfd (never seen): end the child rather than
            // block the executor in waitpid on a live process.
            log().error("{}: cannot wait for pid {} ({}); killing it", name(), pid_, ec.message());
            signal_group_locked(SIGKILL);
        }
        // No child process is left when its supervisor is gone, and a leader that ended by
        // itself (`sh -c 'server & exit 0'`) or was cancelled may leave members of its group
        // running. Before reaping, the pid cannot be reused, so the group id is still this
        // child's: they go now. Tests: "a process that exits by itself takes its background
        // jobs with it", "cancellation reaches the children of a shell".
        signal_group_locked(SIGKILL);
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
void process_state::end_descendants() {
    if (!become_subreaper())
        return;
    descendant_sweep sweep(pid_, lineage_);
    // Named while they run, before the group's SIGKILL below turns them into zombies.
    sweep.first_round();
    {
        std::lock_guard lock(mutex_);
        signal_group_locked(SIGKILL);
    }
    sweep.finish(descendants_budget);
    left_running_ = sweep.left_running();
    if (sweep.unfinished() > 0)
        log().warn("{}: {} descendant(s) killed but not ended within {} ms; left unreaped", name(),
                   sweep.unfinished(), descendants_budget.count());
    if (left_running_.empty())
        return;
    const bool cancelled = record_->cancel_requested();
    if (log().should_log(cancelled ? spdlog::level::debug : spdlog::level::warn)) {
        std::string list;
        for (const auto& d : left_running_)
            list += (list.empty() ? "" : ", ") + d;
        log().log(cancelled ? spdlog::level::debug : spdlog::level::warn,
                  "{} (pid {}) ended and left running, killed: {}", name(), pid_, list);
    }
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

void process_state::signal_group_locked(int sig) const {
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

std::exception_ptr process_state::make_outcome(const std::string& crash) {
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
        return std::make_exception_ptr(boost::system::system_error(
            asio::error::operation_aborted,
            fmt::format("warden: process {} (pid {}) was cancelled{}", name(), pid_,
                        killed_ ? fmt::format(" and killed by SIGKILL after the {} ms grace", grace)
                                : std::string())));
    }
    if (!status)
        return std::make_exception_ptr(std::system_error(
            reap_errno, std::system_category(),
            fmt::format("warden: process {} (pid {}) ended but its exit status is lost (reaped "
                        "elsewhere: is SIGCHLD ignored?)",
                        name(), pid_)));
    const int s = *status;
    if (WIFEXITED(s)) {
        const int code = WEXITSTATUS(s);
        if (code == 0 && sanitizer.empty())
            return nullptr;
        if (record_->kind() == child_kind::forked && code != 0)
            return forked_exit_outcome(argv_, pid_, code, report_bytes_, report_total_,
                                       std::move(tail), std::move(sanitizer), left_running_);
        return std::make_exception_ptr(
            process_error(argv_, pid_, code, std::move(tail), std::move(sanitizer), left_running_));
    }
    if (WIFSIGNALED(s))
        return std::make_exception_ptr(
            process_crashed(argv_, pid_, WTERMSIG(s), WCOREDUMP(s) != 0, std::move(tail),
                            std::make_shared<crash_text>(crash_dump_frames(crash)),
                            std::move(sanitizer), left_running_));
    return std::make_exception_ptr(
        process_error(argv_, pid_, -1, std::move(tail), std::move(sanitizer), left_running_));
}

namespace {

// A copy of the process's failure for a waiter to throw. The same object would be thrown by
// two children (the process, and the coroutine that rethrows it), and report_for() could only
// find one of their reports; a copy keeps each child's report its own.
std::exception_ptr copy_failure(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const process_crashed& e) {
        return std::make_exception_ptr(e);
    } catch (const process_error& e) {
        return std::make_exception_ptr(e);
    } catch (const remote_error& e) {
        return std::make_exception_ptr(e);
    } catch (const boost::system::system_error& e) {
        return std::make_exception_ptr(e);
    } catch (const std::system_error& e) {
        return std::make_exception_ptr(e);
    } catch (...) {
        return error;
    }
}

} // namespace

std::exception_ptr process_state::ended_error(const line_waiter& w) const {
    if (outcome_)
        return copy_failure(outcome_);
    return std::make_exception_ptr(
        timeout_error(fmt::format("warden: process {} (pid {}) exited with code 0 before printing "
                                  "a line matching `{}`",
                                  name(), pid_, w.pattern_text),
                      tail_locked()));
}

std::exception_ptr process_state::timeout_for(const line_waiter& w, duration timeout) const {
    std::lock_guard lock(mutex_);
    return std::make_exception_ptr(timeout_error(
        fmt::format("warden: no line matching `{}` from process {} (pid {}) within {:.3f} s",
                    w.pattern_text, name(), pid_, std::chrono::duration<double>(timeout).count()),
        tail_locked()));
}

std::vector<std::string> process_state::tail_locked() const {
    return {tail_.begin(), tail_.end()};
}

std::vector<std::string> process_state::output_tail() const {
    std::lock_guard lock(mutex_);
    return tail_locked();
}

std::optional<int> process_state::wait_status() const {
    std::lock_guard lock(mutex_);
    return status_;
}

void process_state::add_waiter(const std::shared_ptr<line_waiter>& w,
                               std::optional<duration> timeout) {
    std::optional<std::string> found;
    std::exception_ptr error;
    {
        std::lock_guard lock(mutex_);
        if (w->pattern) {
            // The tail, then (if the process has ended) the end, then each new line, all in
            // order on the matcher's thread.
            for (const auto& line : tail_)
                submit_to_matcher_locked(std::make_shared<const std::string>(line), {w});
            if (finished_)
                submit_to_matcher_locked(nullptr, {w});
            else
                waiters_.push_back(w);
            if (timeout)
                arm_waiter_timer(w, *timeout);
            return;
        }
        for (const auto& line : tail_) {
            if (line.find(w->pattern_text) != std::string::npos) {
                found = line;
                break;
            }
        }
        if (!found) {
            if (!finished_) {
                waiters_.push_back(w);
                if (timeout)
                    arm_waiter_timer(w, *timeout);
                return;
            }
            error = ended_error(*w);
        }
        if (!w->claim())
            return;
    }
    w->complete(error, found ? std::move(*found) : std::string());
}

void process_state::arm_waiter_timer(const std::shared_ptr<line_waiter>& w, duration timeout) {
    asio::post(executor_, [self = shared_from_this(), w, timeout] {
        if (w->claimed.load(std::memory_order_acquire))
            return;
        w->timer.emplace(self->executor_, timeout);
        w->timer->async_wait([self, w, timeout](const boost::system::error_code& ec) {
            if (ec || !w->claim())
                return;
            self->remove_waiter(w.get());
            w->complete(self->timeout_for(*w, timeout), {});
        });
    });
}

bool process_state::submit_to_matcher_locked(std::shared_ptr<const std::string> line,
                                             std::vector<std::shared_ptr<line_waiter>> waiters) {
    if (!matcher_) {
        // The verdict is posted, not handled on the matcher's thread: waiters' timers live on
        // the executor. The weak reference is locked there, never on the matcher's thread, so
        // the state is never destroyed by the thread its destructor joins.
        matcher_ = std::make_unique<line_matcher>(
            [weak = weak_from_this(), executor = executor_](match_verdict verdict) {
                asio::post(executor, [weak, verdict = std::move(verdict)]() mutable {
                    if (auto self = weak.lock())
                        self->settle(std::move(verdict));
                });
            });
    }
    return matcher_->submit(std::move(line), std::move(waiters));
}

void process_state::settle(match_verdict verdict) {
    auto& w = verdict.waiter;
    std::exception_ptr error = verdict.error;
    {
        std::lock_guard lock(mutex_);
        if (!w->claim())
            return;
        std::erase(waiters_, w);
        if (verdict.ended)
            error = ended_error(*w);
    }
    if (w->timer)
        w->timer->cancel();
    w->complete(error, verdict.line && !error ? *verdict.line : std::string());
}

void process_state::stop_matching() noexcept {
    std::unique_ptr<line_matcher> matcher;
    {
        std::lock_guard lock(mutex_);
        matcher = std::move(matcher_);
    }
    if (matcher)
        matcher->stop();
}

void process_state::remove_waiter(const line_waiter* w) {
    std::lock_guard lock(mutex_);
    std::erase_if(waiters_, [w](const auto& p) { return p.get() == w; });
}

void process_state::cancel_waiter_timer(const std::shared_ptr<line_waiter>& w) {
    asio::post(executor_, [w] {
        if (w->timer)
            w->timer->cancel();
    });
}

void end_failed_spawn(supervisor_core& core, child_record& record) {
    // Marked cancelled first, so the supervisor counts it as cancelled, not failed: the
    // caller gets the spawn_error itself.
    record.cancel_requested_.store(true, std::memory_order_release);
    core.child_finished(record, std::make_exception_ptr(boost::system::system_error(
                                    asio::error::operation_aborted, "warden: spawn failed")));
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

namespace {

[[noreturn]] void bad_input(int error, std::string argument, const std::string& detail) {
    throw spawn_error(std::error_code(error, std::system_category()), std::move(argument), detail);
}

bool has_nul(const std::string& s) {
    return s.find('\0') != std::string::npos;
}

// The checks execve would make, done in the parent so that each failure names its cause.
void check_program(const std::string& path, const std::string& shown) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        bad_input(errno, "argv[0]", fmt::format("program `{}`", shown));
    if (S_ISDIR(st.st_mode))
        bad_input(EISDIR, "argv[0]", fmt::format("program `{}`", shown));
    if (!S_ISREG(st.st_mode))
        bad_input(EACCES, "argv[0]", fmt::format("program `{}` is not a regular file", shown));
    if (::access(path.c_str(), X_OK) != 0)
        bad_input(errno, "argv[0]", fmt::format("program `{}` is not executable", shown));
}

std::string search_path(const std::string& name, const std::string& path_list) {
    std::string not_executable;
    std::size_t start = 0;
    for (;;) {
        const auto end = path_list.find(':', start);
        std::string dir = path_list.substr(start, end == std::string::npos ? end : end - start);
        if (dir.empty())
            dir = "."; // POSIX: an empty PATH entry is the current directory
        const std::string candidate = dir + "/" + name;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            if (::access(candidate.c_str(), X_OK) == 0)
                return std::filesystem::absolute(candidate).string();
            if (not_executable.empty())
                not_executable = candidate;
        }
        if (end == std::string::npos)
            break;
        start = end + 1;
    }
    if (!not_executable.empty())
        bad_input(EACCES, "argv[0]",
                  fmt::format("program `{}` found in PATH as `{}`, which is not executable", name,
                              not_executable));
    bad_input(ENOENT, "argv[0]", fmt::format("program `{}` not found in PATH={}", name, path_list));
}

} // namespace

launch_plan plan_launch(const process_options& options) {
    if (options.argv.empty())
        bad_input(EINVAL, "argv", "empty argv, no program to run");
    for (std::size_t i = 0; i < options.argv.size(); ++i)
        if (has_nul(options.argv[i]))
            bad_input(EINVAL, fmt::format("argv[{}]", i), "argument contains a NUL byte");
    const std::string& program = options.argv[0];
    if (program.empty())
        bad_input(ENOENT, "argv[0]", "empty program name");

    launch_plan plan;
    if (options.env) {
        plan.env.reserve(options.env->size());
        for (const auto& [key, value] : *options.env) {
            if (key.empty())
                bad_input(EINVAL, "env", "environment variable with an empty name");
            if (key.find('=') != std::string::npos)
                bad_input(EINVAL, "env",
                          fmt::format("environment variable name `{}` contains '='", key));
            if (has_nul(key) || has_nul(value))
                bad_input(EINVAL, "env",
                          fmt::format("environment variable `{}` contains a NUL byte", key));
            plan.env.push_back(key + "=" + value);
        }
        plan.replace_env = true;
    }

    if (options.cwd) {
        const std::string cwd = options.cwd->string();
        struct stat st {};
        if (cwd.empty() || has_nul(cwd))
            bad_input(ENOENT, "cwd", fmt::format("working directory `{}`", cwd));
        if (::stat(cwd.c_str(), &st) != 0)
            bad_input(errno, "cwd", fmt::format("working directory `{}`", cwd));
        if (!S_ISDIR(st.st_mode))
            bad_input(ENOTDIR, "cwd", fmt::format("working directory `{}`", cwd));
        if (::access(cwd.c_str(), X_OK) != 0)
            bad_input(errno, "cwd", fmt::format("working directory `{}`", cwd));
        plan.cwd = cwd;
    }

    if (program.find('/') != std::string::npos) {
        // The child changes directory before exec: a relative path means relative to cwd, and
        // is passed on as written (a script's $0 is what the user wrote).
        std::filesystem::path path(program);
        if (path.is_relative() && options.cwd)
            path = *options.cwd / path;
        check_program(path.string(), program);
        plan.program = program;
    } else {
        // The child's PATH if the environment is replaced and sets one, else ours.
        std::string path_list;
        if (options.env && options.env->contains("PATH"))
            path_list = options.env->at("PATH");
        else if (const char* ours = std::getenv("PATH"))
            path_list = ours;
        else
            path_list = "/bin:/usr/bin";
        plan.program = search_path(program, path_list);
    }
    return plan;
}

std::string origin_entry(const supervisor_core& core, const child_record& record) noexcept {
    try {
        const origin o{record.where_,
                       {},
                       record.test_ ? *record.test_ : std::string(),
                       record.parent_,
                       core.options().name,
                       outer_origin()};
        return std::string(origin_variable) + "=" + origin_value(o);
    } catch (...) {
        return {};
    }
}

bool is_origin_entry(const char* entry) noexcept {
    return std::string_view(entry).starts_with(origin_variable) &&
           entry[origin_variable.size()] == '=';
}

int launch(const launch_plan& plan, const std::vector<std::string>& argv, int output_fd, int& pid,
           const std::string& origin_entry, const std::string& lineage_entry) {
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    // The child's environment: the given one or ours, with our WARDEN_ORIGIN in place of any
    // it had (ours names the spawn, then chains the one we were given), and our
    // WARDEN_LINEAGE in place of any (it chains ours; a given one is not warden's).
    std::vector<char*> env;
    const bool own_env = plan.replace_env || !origin_entry.empty() || !lineage_entry.empty();
    if (plan.replace_env) {
        env.reserve(plan.env.size() + 3);
        for (const auto& e : plan.env)
            if (lineage_entry.empty() || !is_lineage_entry(e.c_str()))
                env.push_back(const_cast<char*>(e.c_str()));
    } else if (own_env) {
        for (char** e = environ; *e != nullptr; ++e)
            if (!(!origin_entry.empty() && is_origin_entry(*e)) &&
                !(!lineage_entry.empty() && is_lineage_entry(*e)))
                env.push_back(*e);
    }
    if (!origin_entry.empty())
        env.push_back(const_cast<char*>(origin_entry.c_str()));
    if (!lineage_entry.empty())
        env.push_back(const_cast<char*>(lineage_entry.c_str()));
    if (own_env)
        env.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    if (int err = ::posix_spawn_file_actions_init(&actions))
        return err;
    if (int err = ::posix_spawnattr_init(&attr)) {
        ::posix_spawn_file_actions_destroy(&actions);
        return err;
    }
    int err = 0;
    auto step = [&](int result) {
        if (err == 0)
            err = result;
    };
    // stdout and stderr share one pipe, so the tail keeps their interleaving; stdin is
    // /dev/null, so a child never reads the test runner's terminal. Then nothing above 2.
    step(::posix_spawn_file_actions_adddup2(&actions, output_fd, STDOUT_FILENO));
    step(::posix_spawn_file_actions_adddup2(&actions, output_fd, STDERR_FILENO));
    step(::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0));
    if (plan.cwd)
        step(::posix_spawn_file_actions_addchdir_np(&actions, plan.cwd->c_str()));
    step(::posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1));
    // Its own process group (so a cancel reaches a shell's children too), default signal
    // dispositions and an empty mask, whatever the spawning thread had.
    sigset_t none;
    sigset_t all;
    sigemptyset(&none);
    sigfillset(&all);
    step(::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF));
    step(::posix_spawnattr_setpgroup(&attr, 0));
    step(::posix_spawnattr_setsigmask(&attr, &none));
    step(::posix_spawnattr_setsigdefault(&attr, &all));
    if (err == 0) {
        pid_t child = -1;
        err = ::posix_spawn(&child, plan.program.c_str(), &actions, &attr, args.data(),
                            own_env ? env.data() : environ);
        pid = child;
    }
    ::posix_spawnattr_destroy(&attr);
    ::posix_spawn_file_actions_destroy(&actions);
    return err;
}

} // namespace warden::detail

namespace warden {

namespace {

using detail::line_waiter;
using detail::process_state;

std::shared_ptr<line_waiter> make_waiter(std::string_view pattern) {
    // The common readiness pattern is a plain word: a substring search gives the same answer
    // as std::regex, at once and on any line.
    if (detail::is_plain_pattern(pattern))
        return std::make_shared<line_waiter>(std::string(pattern));
    return std::make_shared<line_waiter>(std::regex(pattern.begin(), pattern.end()),
                                         std::string(pattern));
}

std::shared_ptr<line_waiter> make_waiter(std::regex pattern) {
    return std::make_shared<line_waiter>(std::move(pattern), "<std::regex>");
}

asio::awaitable<std::string> async_line(std::shared_ptr<process_state> state,
                                        std::shared_ptr<line_waiter> waiter,
                                        clock_type::duration timeout) {
    // Not a coroutine: the initiation runs when the caller co_awaits, with its own copies of
    // the arguments.
    return asio::async_initiate<const asio::use_awaitable_t<>&,
                                void(std::exception_ptr, std::string)>(
        [](auto handler, std::shared_ptr<process_state> state, std::shared_ptr<line_waiter> w,
           clock_type::duration timeout) {
            auto slot = asio::get_associated_cancellation_slot(handler);
            // Keeps the awaiter's context running while it waits on another one.
            auto work =
                asio::prefer(asio::get_associated_executor(handler, state->core().executor()),
                             asio::execution::outstanding_work.tracked);
            w->complete = [handler = std::move(handler),
                           work = std::move(work)](std::exception_ptr e, std::string line) mutable {
                auto executor = work;
                asio::post(executor, [handler = std::move(handler), work = std::move(work), e,
                                      line = std::move(line)]() mutable {
                    asio::get_associated_cancellation_slot(handler).clear();
                    std::move(handler)(e, std::move(line));
                });
            };
            if (slot.is_connected()) {
                slot.assign([state, w](asio::cancellation_type) {
                    if (!w->claim())
                        return;
                    state->remove_waiter(w.get());
                    state->cancel_waiter_timer(w);
                    w->complete(std::make_exception_ptr(boost::system::system_error(
                                    asio::error::operation_aborted,
                                    "warden: process::wait_for_line cancelled")),
                                {});
                });
            }
            state->add_waiter(w, timeout);
        },
        asio::use_awaitable, std::move(state), std::move(waiter), timeout);
}

std::string blocking_line(const std::shared_ptr<process_state>& state,
                          const std::shared_ptr<line_waiter>& w, clock_type::duration timeout) {
    state->core().check_can_block("process::wait_for_line_blocking");
    struct result {
        std::mutex mutex;
        std::condition_variable cv;
        bool done = false;
        std::exception_ptr error;
        std::string line;
    };
    auto r = std::make_shared<result>();
    w->complete = [r](std::exception_ptr e, std::string line) {
        {
            std::lock_guard lock(r->mutex);
            r->done = true;
            r->error = std::move(e);
            r->line = std::move(line);
        }
        r->cv.notify_all();
    };
    state->add_waiter(w, std::nullopt);
    std::unique_lock lock(r->mutex);
    if (!r->cv.wait_until(lock, detail::deadline_after(timeout), [&] { return r->done; })) {
        lock.unlock();
        if (w->claim()) {
            state->remove_waiter(w.get());
            std::rethrow_exception(state->timeout_for(*w, timeout));
        }
        // Claimed meanwhile by a line or the exit: its result is on the way.
        lock.lock();
        r->cv.wait(lock, [&] { return r->done; });
    }
    if (r->error)
        std::rethrow_exception(r->error);
    return std::move(r->line);
}

} // namespace

process::process(std::shared_ptr<detail::process_state> state)
    : state_(std::move(state)) {}

process::~process() = default;

int process::pid() const noexcept {
    return state_->pid();
}

const std::string& process::name() const noexcept {
    return state_->name();
}

bool process::done() const noexcept {
    return state_->record()->done();
}

asio::awaitable<std::string> process::wait_for_line(std::string_view pattern,
                                                    clock_type::duration timeout) {
    return async_line(state_, make_waiter(pattern), timeout);
}

asio::awaitable<std::string> process::wait_for_line(std::regex pattern,
                                                    clock_type::duration timeout) {
    return async_line(state_, make_waiter(std::move(pattern)), timeout);
}

std::string process::wait_for_line_blocking(std::string_view pattern,
                                            clock_type::duration timeout) {
    return blocking_line(state_, make_waiter(pattern), timeout);
}

std::string process::wait_for_line_blocking(std::regex pattern, clock_type::duration timeout) {
    return blocking_line(state_, make_waiter(std::move(pattern)), timeout);
}

std::vector<std::string> process::output_tail() const {
    return state_->output_tail();
}

void process::terminate() {
    state_->record()->cancel();
}

task<void> process::as_task() const {
    return task<void>(state_->record());
}

std::optional<int> process::wait_status() const {
    return state_->wait_status();
}

process* supervisor::spawn_process(process_options options, std::error_code& ec,
                                   std::source_location where) {
    try {
        process& p = spawn_process(std::move(options), where);
        ec.clear();
        return &p;
    } catch (const spawn_error& e) {
        ec = e.code();
        return nullptr;
    }
}

process& supervisor::spawn_process(process_options options, std::source_location where) {
    // Everything that can be wrong with the input is found here, before anything is admitted
    // or started.
    const auto plan = detail::plan_launch(options);
    auto output = detail::make_pipe("output pipe");
    std::string name = std::move(options.name);
    if (name.empty()) {
        auto base = std::filesystem::path(options.argv[0]).filename().string();
        name = fmt::format("{}#{}", base.empty() ? options.argv[0] : base,
                           ++detail::next_process_number);
    }
    auto record = std::make_shared<detail::task_state<void>>();
    core_->admit(record, child_kind::process, std::move(name), where);
    // A WARDEN_ORIGIN the caller gave in `env` is theirs to set, and wins.
    const bool origin_given =
        options.env && options.env->contains(std::string(detail::origin_variable));
    const std::string origin = origin_given ? std::string() : detail::origin_entry(*core_, *record);
    // Before the first child starts, so that none of its orphans goes to init.
    detail::become_subreaper();
    std::string lineage = detail::new_lineage_token();
    int pid = -1;
    if (const int err = detail::launch(plan, options.argv, output.write.get(), pid, origin,
                                       detail::lineage_entry(lineage))) {
        // Passed the checks but exec still failed: a bad #! interpreter, a file removed
        // meanwhile, ENOEXEC, EAGAIN. glibc has reaped the failed child.
        detail::end_failed_spawn(*core_, *record);
        throw spawn_error(std::error_code(err, std::system_category()), "argv[0]",
                          fmt::format("program `{}` could not be executed", plan.program));
    }
    output.write.reset();
    return detail::adopt(core_, record, std::move(options.argv), options.output_tail, pid,
                         std::move(output.read), {}, {}, std::move(lineage));
}

} // namespace warden
