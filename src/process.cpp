// Supervised subprocesses: the public API (supervisor::spawn_process, process). The rest is in
// launch.cpp (descriptors, the launch plan, posix_spawn), process_state.cpp (the running
// process: exit wait, pipes, cancellation, descendants, outcome) and output_lines.cpp (lines
// and their waiters).
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
#include <filesystem>

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
#include "descendants.hpp"
#include "log.hpp"
#include "process_state.hpp"
#include "registry.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace warden::detail {

namespace {

std::atomic<std::uint64_t> next_process_number{0};

} // namespace

} // namespace warden::detail

namespace warden {

namespace {

using detail::line_waiter;
using detail::process_state;

// A std::regex_error (same code, caught the same way) whose what() names the pattern:
// std::regex's own says only what is wrong ("Mismatched '(' and ')' in regular expression").
class bad_pattern : public std::regex_error {
  public:
    bad_pattern(const std::regex_error& e, std::string_view pattern)
        : std::regex_error(e.code())
        , what_(fmt::format("warden: process::wait_for_line: pattern `{}` is not a valid "
                            "regular expression (ECMAScript): {}",
                            pattern, e.what())) {}
    const char* what() const noexcept override { return what_.c_str(); }

  private:
    std::string what_;
};

std::shared_ptr<line_waiter> make_waiter(std::string_view pattern) {
    // The common readiness pattern is a plain word: a substring search gives the same answer
    // as std::regex, at once and on any line.
    if (detail::is_plain_pattern(pattern))
        return std::make_shared<line_waiter>(std::string(pattern));
    try {
        return std::make_shared<line_waiter>(std::regex(pattern.begin(), pattern.end()),
                                             std::string(pattern));
    } catch (const std::regex_error& e) {
        throw bad_pattern(e, pattern);
    }
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
    const std::string lineage_entry = detail::lineage_entry(lineage);
    int pid = -1;
    if (const int err =
            detail::launch(plan, options.argv, output.write.get(), pid, origin, lineage_entry)) {
        // Passed the checks but exec still failed: a bad #! interpreter, a file removed
        // meanwhile, ENOEXEC, EAGAIN, E2BIG. glibc has reaped the failed child.
        detail::end_failed_spawn(*core_, *record);
        const std::error_code code(err, std::system_category());
        if (err == E2BIG) {
            auto too_long = detail::exec_too_long(plan, options.argv, origin, lineage_entry);
            throw spawn_error(code, std::move(too_long.argument), too_long.detail);
        }
        throw spawn_error(code, "argv[0]",
                          fmt::format("program `{}` could not be executed", plan.program));
    }
    output.write.reset();
    return detail::adopt(core_, record, std::move(options.argv), options.output_tail, pid,
                         std::move(output.read), {}, {}, std::move(lineage));
}

} // namespace warden
