// The supervisor's rules. Each is kept by the code named here, and only there.
//
// 1. Who owns a child. supervisor_core::admit() enters the child record in `live_` before
//    its body can start; only child_finished() takes it out. While a record is in `live_`
//    the supervisor counts it as running, whatever kind it is.
//
// 2. One way to end. Every kind of child ends by a call to child_finished(child, error):
//    coroutine children from co_spawn's completion handler, blocking children at the end of
//    their pool job, processes and forked children from their exit wait (process.cpp).
//    Classifying the outcome, deciding the first failure, cancelling siblings, waking every
//    waiter and completing the task handle happen there and nowhere else, so no kind of
//    child can be reported differently from another, or twice.
//
// 3. The first failure. Decided under `mutex_`: the failure that finds `failures_` empty is
//    the first. Under fail_fast the same critical section closes the supervisor
//    (phase failed) and takes the list of siblings to cancel. Later failures are appended;
//    they become the `suppressed` lines of the first report. An exception a child ends
//    with after its cancellation was requested, and that means "operation aborted", is the
//    child obeying the cancellation, not a failure.
//
// 4. No child outlives its supervisor. ~supervisor cancels every child and waits until
//    `live_` is empty, logging the stragglers every cancel_grace; only then are the I/O
//    thread and the pool joined. Nothing is ever detached.

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <fmt/format.h>

#include "child_executor.hpp"
#include "core.hpp"
#include "log.hpp"
#include "process_state.hpp"
#include "registry.hpp"
#include "stack.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace warden::detail {

namespace {

thread_local child_record* running_child_ = nullptr;

struct exception_description {
    std::string type;
    std::string what;
};

exception_description describe(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        exception_description d{current_exception_type_name(), e.what()};
        // An empty what() would make "x failed: " with nothing after it.
        if (d.what.empty())
            d.what = d.type;
        return d;
    } catch (...) {
        auto type = current_exception_type_name();
        return {type, type};
    }
}

// "thread#12": what fmt::format("{}#{}") makes, at a tenth of its cost per spawn.
std::string default_name(child_kind kind, std::uint64_t id) {
    char digits[std::numeric_limits<std::uint64_t>::digits10 + 1];
    char* end = std::to_chars(std::begin(digits), std::end(digits), id).ptr;
    const std::string_view kind_name = to_string(kind);
    std::string name;
    name.reserve(kind_name.size() + 1 + static_cast<std::size_t>(end - digits));
    name.append(kind_name).append(1, '#').append(std::string_view(digits, end));
    return name;
}

std::string format_running_for(clock_type::duration d) {
    return fmt::format("{:.3f} s", std::chrono::duration<double>(d).count());
}

} // namespace

bool is_cancellation(const std::exception_ptr& error) noexcept {
    try {
        std::rethrow_exception(error);
    } catch (const boost::system::system_error& e) {
        return e.code() == asio::error::operation_aborted;
    } catch (const std::system_error& e) {
        return e.code() == std::errc::operation_canceled;
    } catch (...) {
        return false;
    }
}

child_record* current_child() noexcept {
    return running_child_;
}

current_child_scope::current_child_scope(child_record* child) noexcept
    : previous_(running_child_) {
    running_child_ = child;
}

current_child_scope::~current_child_scope() {
    running_child_ = previous_;
}

child_record::~child_record() = default;

void child_record::cancel() {
    if (owner_)
        owner_->cancel_child(*this);
}

void child_record::wait_done() const {
    if (done())
        return;
    if (current_child() == this)
        throw std::logic_error(fmt::format("warden: child {} waits for itself", name_));
    // Only a thread child can finish while the I/O thread is blocked here.
    if (owner_ && kind_ != child_kind::thread)
        owner_->check_can_block("task::get");
    done_.wait(false, std::memory_order_acquire);
}

void child_record::on_done(unique_function<void()> fn) {
    {
        std::lock_guard lock(mutex_);
        if (!done()) {
            on_done_.push_back(std::move(fn));
            return;
        }
    }
    fn();
}

supervisor_core::supervisor_core(supervisor_options options)
    : options_(std::move(options)) {
    own_io_.emplace(1);
    work_.emplace(own_io_->get_executor());
    executor_ = own_io_->get_executor();
    io_thread_ = std::thread([this] { own_io_->run(); });
}

supervisor_core::supervisor_core(asio::any_io_executor executor, supervisor_options options)
    : options_(std::move(options))
    , executor_(std::move(executor)) {}

asio::thread_pool& supervisor_core::pool() {
    // Not under mutex_: every blocking spawn asks for the pool, and that lock is contended
    // by the pool threads ending children.
    std::call_once(pool_created_, [this] {
        std::size_t n = options_.threads;
        if (n == 0)
            n = std::max(1u, std::thread::hardware_concurrency());
        pool_ = std::make_unique<asio::thread_pool>(n);
    });
    return *pool_;
}

void supervisor_core::admit(const std::shared_ptr<child_record>& child, child_kind kind,
                            std::string name, const std::source_location& where) {
    child_record* parent = current_child();
    child->kind_ = kind;
    child->where_ = where;
    child->test_ = current_test_shared();
    if (parent != nullptr)
        child->parent_ = parent->name_;
    if (options_.capture == capture::stacktrace)
        child->spawn_stack_ = capture_stack(2); // admit() and supervisor::admit()
    child->owner_ = shared_from_this();
    {
        auto lock = this->lock();
        if (phase_ != phase::open)
            throw supervisor_closed(
                fmt::format("warden: supervisor {} {}; spawn at {}:{} refused", options_.name,
                            phase_ == phase::cancelled ? "was cancelled" : "has failed",
                            where.file_name(), where.line()));
        child->id_ = ++next_id_;
        child->name_ = name.empty() ? default_name(kind, child->id_) : std::move(name);
        child->started_ = clock_type::now();
        live_.push_back(child);
    }
    if (log().should_log(spdlog::level::debug))
        log().debug("{}: {} ({}) started, spawned at {}:{}{}", options_.name, child->name_,
                    to_string(kind), where.file_name(), where.line(),
                    parent != nullptr ? " by " + parent->name_ : std::string());
}

void supervisor_core::arm_cancel(child_record& child, unique_function<void()> action) {
    std::lock_guard lock(child.mutex_);
    // A child can finish on another thread before its starter arms the action (a coroutine
    // that completes at once, a process reaped before start() returns). child_finished()
    // cleared the action already; one stored now would never be dropped, and it holds the
    // child's state, which holds this core: a leak of the whole supervisor (LeakSanitizer,
    // "wait_for_line throws the process's own failure at once when it exits first").
    if (child.done())
        return;
    child.cancel_action_ = std::move(action);
    // A cancel that came between admit() and here found no action: deliver it now.
    if (child.cancel_requested() && !child.cancel_delivered_ && child.cancel_action_) {
        child.cancel_delivered_ = true;
        child.cancel_action_();
    }
}

void supervisor_core::cancel_child(child_record& child) {
    if (child.done())
        return;
    // The exchange makes every child cancelled at most once. request_stop() runs the
    // child's own stop callbacks, so it is called without holding any lock of ours.
    if (child.cancel_requested_.exchange(true, std::memory_order_acq_rel))
        return;
    if (child.stop_.stop_possible())
        child.stop_.request_stop();
    std::lock_guard lock(child.mutex_);
    if (!child.done() && child.cancel_action_ && !child.cancel_delivered_) {
        child.cancel_delivered_ = true;
        child.cancel_action_();
    }
}

void supervisor_core::child_finished(child_record& child, std::exception_ptr error) {
    const bool cancelled = child.cancel_requested();
    const bool failed = error && !(cancelled && is_cancellation(error));

    std::shared_ptr<child_record> keep_alive;
    std::vector<std::shared_ptr<child_record>> siblings;
    failure_record* failure = nullptr;
    std::shared_ptr<failure_report> report;
    bool first = false;
    std::vector<unique_function<void()>> callbacks;
    {
        auto lock = this->lock();
        keep_alive = live_.erase(child);
        if (failed) {
            first = failures_.empty();
            failure = &failures_.emplace_back();
            failure->spawn_stack = child.spawn_stack_;
            auto& r = failure->report;
            r.error = error;
            r.child = child.name_;
            r.kind = child.kind_;
            r.origin = origin_of(child);
            r.when = std::chrono::system_clock::now();
            // Copied here, under the lock: once it is released a waiter may be writing the
            // record's description and symbolised stack (TSan: "collect policy runs every
            // child to the end"). Both are added to the copy below.
            report = std::make_shared<failure_report>(r);
            if (first) {
                failed_at_ = clock_type::now();
                // Closed here, in the same step that makes this failure the first, so no
                // child admitted after it escapes the cancellation below.
                if (options_.policy == policy::fail_fast)
                    phase_ = phase::failed;
            }
        }
        // The child is done in the same step that takes it out of the table: a wait that
        // returns because the table is empty finds every task done (lock order: the
        // supervisor's mutex, then the child's).
        {
            std::lock_guard child_lock(child.mutex_);
            child.error_ = error;
            child.cancel_action_ = {};
            callbacks.swap(child.on_done_);
            // Release: pairs with the acquire in done(); error_ and the value are visible.
            child.done_.store(true, std::memory_order_release);
        }
        // Waits without a predicate (join, wait) care only whether every child is done
        // or one has failed; waking them for each of 100k finishing children costs more
        // than the children do.
        notify_and_unlock(lock, failed || live_.empty());
    }
    child.done_.notify_all();
    for (auto& callback : callbacks)
        callback();

    if (first && options_.policy == policy::fail_fast) {
        // The waiters were woken first: with 100k siblings, taking the list costs
        // milliseconds that the parent need not wait for. A sibling that ends meanwhile
        // needs no cancelling.
        {
            std::lock_guard lock(mutex_);
            siblings.reserve(live_.size());
            for (const auto& sibling : live_)
                siblings.push_back(sibling);
        }
        stop_.request_stop();
        for (auto& sibling : siblings)
            cancel_child(*sibling);
    }

    if (failure != nullptr) {
        // Described after the waiters were woken: rethrowing to read what() and demangling
        // the type cost microseconds (several, the first time on a fresh pool thread) that
        // the parent need not wait for; a waiter that builds a report first does it itself.
        describe(*failure);
        report->what = failure->report.what; // ordered after the write by call_once
        report->type = failure->report.type;
        // Symbolising takes milliseconds, so it happens after every waiter has been woken,
        // and only for the first failure: in a storm of ten thousand failures the later
        // ones are logged by their first line and origin (their stacks are symbolised when
        // failures() hands them out).
        if (first) {
            symbolise(*failure);
            // Ordered after the write by call_once.
            report->origin.stacktrace = failure->report.origin.stacktrace;
        }
        register_report(report);
        // Guarded: building the text costs more than the failure's whole trip to the parent.
        if (log().should_log(spdlog::level::err)) {
            if (first)
                log().error("{}", report->to_string());
            else
                log().error("{} (after the first failure)\n{}", first_line(*report),
                            describe_origin(report->origin, "  "));
        }
    } else if (log().should_log(spdlog::level::debug)) {
        log().debug("{}: {} ({}) finished after {}: {}", options_.name, child.name_,
                    to_string(child.kind_), format_running_for(clock_type::now() - child.started_),
                    error ? "cancelled" : (cancelled ? "done after cancel" : "done"));
    }
}

std::unique_lock<std::mutex> supervisor_core::lock() const {
    // admit() on the spawning thread and child_finished() on the pool threads take this lock
    // for every child, each for a fraction of a microsecond. Sleeping on it costs a futex
    // wait and a wake, more than a trivial child does: a short spin first.
    for (int attempt = 0; attempt < 64; ++attempt) {
        if (mutex_.try_lock())
            return std::unique_lock(mutex_, std::adopt_lock);
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    return std::unique_lock(mutex_);
}

void supervisor_core::notify_and_unlock(std::unique_lock<std::mutex>& lock, bool settled) {
    ++notifications_;
    std::vector<unique_function<void()>> waiters;
    if (settled) {
        ++settlements_;
        waiters.swap(change_waiters_);
    }
    lock.unlock();
    changed_.notify_all();
    if (settled)
        settled_.notify_all();
    for (auto& waiter : waiters)
        waiter();
}

void supervisor_core::notify() {
    auto lock = this->lock();
    notify_and_unlock(lock, false);
}

void supervisor_core::on_next_change(std::unique_lock<std::mutex>&, unique_function<void()> fn) {
    change_waiters_.push_back(std::move(fn));
}

void supervisor_core::cancel() {
    std::vector<std::shared_ptr<child_record>> children;
    {
        auto lock = this->lock();
        if (phase_ == phase::open)
            phase_ = phase::cancelled;
        for (const auto& child : live_)
            children.push_back(child);
        notify_and_unlock(lock, true);
    }
    stop_.request_stop();
    for (auto& child : children)
        cancel_child(*child);
}

void supervisor_core::describe(failure_record& r) const {
    std::call_once(r.described, [&] {
        auto d = detail::describe(r.report.error);
        r.report.what = std::move(d.what);
        r.report.type = std::move(d.type);
    });
}

void supervisor_core::symbolise(failure_record& r) const {
    std::call_once(r.symbolised, [&] {
        if (r.spawn_stack)
            r.report.origin.stacktrace = detail::symbolise(*r.spawn_stack);
    });
}

origin supervisor_core::origin_of(const child_record& child) const {
    return {
        child.where_, {}, child.test_ ? *child.test_ : std::string(), child.parent_, options_.name};
}

running_child supervisor_core::describe_running(const child_record& child,
                                                clock_type::time_point now) const {
    running_child c{child.name_, child.kind_, now - child.started_, origin_of(child)};
    if (child.spawn_stack_)
        c.origin.stacktrace = detail::symbolise(*child.spawn_stack_);
    return c;
}

std::vector<running_child> supervisor_core::running_locked() const {
    std::vector<running_child> out;
    const auto now = clock_type::now();
    for (const auto& child : live_)
        out.push_back(describe_running(*child, now));
    return out;
}

failure_report supervisor_core::snapshot_locked(failure_record& r, bool with_stragglers) const {
    describe(r);
    symbolise(r);
    failure_report out = r.report;
    if (&r == &failures_.front()) {
        for (auto it = std::next(failures_.begin()); it != failures_.end(); ++it) {
            describe(*it); // done already by the failing child's thread, unless it is just now
            // One line each, even when what() has several (a process's output tail).
            auto line = first_line(it->report);
            out.suppressed.push_back(line.substr(0, line.find('\n')));
        }
    }
    if (!with_stragglers)
        return out;
    // Bounded: a report must stay readable, and building it is on the parent's wake-up path.
    constexpr std::size_t max_listed = 32;
    const auto now = clock_type::now();
    for (const auto& child : live_) {
        if (out.stragglers.size() == max_listed) {
            out.stragglers.push_back(fmt::format("... and {} more", live_.size() - max_listed));
            break;
        }
        out.stragglers.push_back(fmt::format("{} ({}) running for {}", child->name_,
                                             to_string(child->kind_),
                                             format_running_for(now - child->started_)));
    }
    return out;
}

clock_type::time_point supervisor_core::failure_deadline_locked() const {
    return failed_at_ + options_.cancel_grace;
}

supervisor_core::step supervisor_core::evaluate(std::unique_lock<std::mutex>&,
                                                clock_type::time_point now,
                                                clock_type::time_point deadline, bool at_once) {
    // Under fail_fast only the first failure is ever thrown (later ones are its suppressed
    // lines); under collect, wait_until throws each failure once, join the rest as a group.
    const bool fail_fast = options_.policy == policy::fail_fast;
    auto first_unobserved = [&]() -> failure_record* {
        if (fail_fast)
            return failures_.empty() || failures_.front().observed ? nullptr : &failures_.front();
        for (auto& r : failures_)
            if (!r.observed)
                return &r;
        return nullptr;
    };
    auto throw_first_unobserved = [&](bool gave_up_waiting) -> step {
        failure_record& r = *first_unobserved();
        r.observed = true;
        register_report(std::make_shared<failure_report>(snapshot_locked(r, gave_up_waiting)));
        return {verdict::throw_error, r.report.error, {}};
    };
    const bool unobserved = first_unobserved() != nullptr;
    if (unobserved && (fail_fast || at_once)) {
        // Thrown at once, the children still running are siblings being cancelled; after
        // the grace (or the caller's deadline) they are stragglers, and named as such.
        if (at_once || live_.empty())
            return throw_first_unobserved(false);
        if (now >= failure_deadline_locked() || now >= deadline)
            return throw_first_unobserved(true);
        return {verdict::keep_waiting, {}, std::min(failure_deadline_locked(), deadline)};
    }
    if (!live_.empty())
        return {verdict::keep_waiting, {}, deadline};
    if (unobserved) {
        // Only what no wait has thrown yet: a failure is thrown once.
        std::vector<failure_report> reports;
        for (auto& r : failures_) {
            if (r.observed)
                continue;
            r.observed = true;
            reports.push_back(snapshot_locked(r, false));
        }
        return {
            verdict::throw_error, std::make_exception_ptr(failure_group(std::move(reports))), {}};
    }
    return {verdict::finished, {}, {}};
}

void supervisor_core::check_not_own_child(const char* what) const {
    child_record* child = current_child();
    if (child != nullptr && child->owner_.get() == this)
        throw std::logic_error(fmt::format(
            "warden: {} called from inside child {} of supervisor {}: it would wait for itself",
            what, child->name_, options_.name));
}

bool supervisor_core::on_own_io_thread() const {
    return own_io_ && own_io_->get_executor().running_in_this_thread();
}

void supervisor_core::check_can_block(const char* what) const {
    if (on_own_io_thread())
        throw std::logic_error(fmt::format(
            "warden: blocking {} on the I/O thread of supervisor {} would stop the coroutines "
            "it waits for; use co_await",
            what, options_.name));
}

void supervisor_core::wait(clock_type::time_point deadline, clock_type::duration timeout,
                           function_ref<bool()>* pred, clock_type::duration poll) {
    check_not_own_child("wait");
    check_can_block("wait");
    auto lock = this->lock();
    for (;;) {
        const auto now = clock_type::now();
        auto s = evaluate(lock, now, deadline, pred != nullptr);
        if (s.what == verdict::throw_error) {
            lock.unlock();
            std::rethrow_exception(s.error);
        }
        if (pred != nullptr) {
            const auto seen = notifications_;
            lock.unlock();
            const bool ready = (*pred)();
            lock.lock();
            if (ready) {
                // A failure recorded while pred ran wins: pred may be true only because the
                // failing child is gone (the stress program's seed 7, run 12075).
                auto again = evaluate(lock, clock_type::now(), deadline, true);
                if (again.what == verdict::throw_error) {
                    lock.unlock();
                    std::rethrow_exception(again.error);
                }
                return;
            }
            if (notifications_ != seen)
                continue; // a child finished while pred ran: look again at once
        } else if (s.what == verdict::finished) {
            return;
        }
        if (now >= deadline) {
            lock.unlock();
            throw_join_timeout(timeout);
        }
        auto wake = std::min(s.wake_at, deadline);
        if (pred != nullptr)
            wake = std::min(wake, now + poll);
        if (pred != nullptr) {
            const auto seen = notifications_;
            changed_.wait_until(lock, wake, [&] { return notifications_ != seen; });
        } else {
            const auto seen = settlements_;
            settled_.wait_until(lock, wake, [&] { return settlements_ != seen; });
        }
    }
}

void supervisor_core::throw_join_timeout(clock_type::duration timeout) const {
    std::vector<running_child> running;
    {
        auto lock = this->lock();
        running = running_locked();
    }
    throw join_timeout(options_.name,
                       std::chrono::duration_cast<std::chrono::milliseconds>(timeout),
                       std::move(running));
}

std::vector<child_info> supervisor_core::children() const {
    auto lock = this->lock();
    std::vector<child_info> out;
    const auto now = clock_type::now();
    for (const auto& child : live_) {
        auto c = describe_running(*child, now);
        out.push_back({std::move(c.name), c.kind,
                       child->cancel_requested() ? child_state::cancelling : child_state::running,
                       std::move(c.origin), c.running_for});
    }
    return out;
}

std::optional<failure_report> supervisor_core::first_failure() const {
    auto lock = this->lock();
    if (failures_.empty())
        return std::nullopt;
    return snapshot_locked(failures_.front(), false);
}

std::vector<failure_report> supervisor_core::failures() const {
    auto lock = this->lock();
    std::vector<failure_report> out;
    // snapshot_locked gives the first its suppressed lines, the others none.
    for (auto& r : failures_)
        out.push_back(snapshot_locked(r, false));
    return out;
}

bool supervisor_core::failure_observed() const {
    auto lock = this->lock();
    return !failures_.empty() && failures_.front().observed;
}

process& supervisor_core::keep(std::unique_ptr<process> p, std::shared_ptr<process_state> state) {
    auto lock = this->lock();
    process_states_.push_back(std::move(state));
    processes_.push_back(std::move(p));
    return *processes_.back();
}

void supervisor_core::shutdown() noexcept {
    try {
        cancel();
        auto lock = this->lock();
        if (on_own_io_thread() && !live_.empty()) {
            log().critical("{}: destroyed from its own I/O thread with children running; "
                           "cannot wait for them",
                           options_.name);
            std::terminate();
        }
        // With the caller's io_context: if we are on its thread, nobody else runs it.
        asio::io_context* caller_io = nullptr;
        if (!own_io_) {
            auto* io_executor = executor_.target<asio::io_context::executor_type>();
            if (io_executor != nullptr && io_executor->running_in_this_thread())
                caller_io = &io_executor->context();
        }
        while (!live_.empty()) {
            if (caller_io != nullptr) {
                lock.unlock();
                caller_io->run_one_for(options_.cancel_grace);
                lock.lock();
                continue;
            }
            if (settled_.wait_for(lock, options_.cancel_grace, [&] { return live_.empty(); }))
                break;
            std::string names;
            for (const auto& child : live_)
                names += fmt::format(" {} ({})", child->name_, to_string(child->kind_));
            log().warn("{}: destructor waits for {} child{} that ignore cancellation:{}",
                       options_.name, live_.size(), live_.size() == 1 ? "" : "ren", names);
        }
        if (!failures_.empty() && !failures_.front().observed) {
            auto report = snapshot_locked(failures_.front(), false);
            log().error("{}: failure nobody joined:\n{}", options_.name, report.to_string());
        }
    } catch (...) {
        // Logging failed (out of memory, a broken sink): waiting above still happened.
    }
    // Every process has finished, but a regex wait_for_line may still be matching (a runaway
    // pattern): abandoned here, its verdicts are posted before the io_context stops.
    std::vector<std::shared_ptr<process_state>> states;
    {
        auto lock = this->lock();
        states.swap(process_states_);
    }
    for (const auto& state : states)
        state->stop_matching();
    states.clear();
    if (own_io_) {
        work_.reset();
        // Handlers still queued (timer cancellations for finished joins, the matchers'
        // verdicts) run first. Two hops: a verdict cancels its waiter's timer, which queues
        // the timer's handler behind the first hop; the stop comes after that one too.
        asio::post(*own_io_, [this] { asio::post(*own_io_, [this] { own_io_->stop(); }); });
        io_thread_.join();
        // Destroys what never ran, and the shared_ptrs to this core it held.
        own_io_.reset();
    }
    std::unique_ptr<asio::thread_pool> pool;
    {
        auto lock = this->lock();
        pool = std::move(pool_);
    }
    if (pool)
        pool->join();
    // Each process object holds its child record, which holds this core: released last, or
    // the core would keep itself alive (and every process state with it).
    std::vector<std::unique_ptr<process>> processes;
    {
        auto lock = this->lock();
        processes.swap(processes_);
    }
}

} // namespace warden::detail

namespace warden {

supervisor::supervisor(supervisor_options options)
    : core_(std::make_shared<detail::supervisor_core>(std::move(options))) {}

supervisor::supervisor(asio::any_io_executor executor, supervisor_options options)
    : core_(std::make_shared<detail::supervisor_core>(std::move(executor), std::move(options))) {}

supervisor::~supervisor() {
    core_->shutdown();
}

void supervisor::admit(const std::shared_ptr<detail::child_record>& child, child_kind kind,
                       spawn_options options, const std::source_location& where) {
    core_->admit(child, kind, std::move(options.name), where);
}

namespace {

// `body` is an awaitable<void>, or a callable returning one: for a void child co_spawn keeps
// the callable in its own entry frame, which saves a wrapper coroutine frame per child.
template <class Body>
void start_coroutine_child(const std::shared_ptr<detail::child_record>& child, Body body) {
    detail::child_record* record = child.get();
    auto on_end = asio::bind_cancellation_slot(
        record->cancel_signal_.slot(), [child](std::exception_ptr error) {
            // co_spawn left its cancellation handler in the slot, holding the child's
            // executor, which holds the record that holds the slot: a cycle to break here.
            child->cancel_signal_.slot().clear();
            child->owner_->child_finished(*child, std::move(error));
        });
    auto executor = record->owner_->executor();
    if (auto* io = executor.target<asio::io_context::executor_type>())
        asio::co_spawn(detail::child_executor(*io, child), std::move(body), std::move(on_end));
    else
        asio::co_spawn(detail::child_executor(executor, child), std::move(body), std::move(on_end));
    // Armed after co_spawn has connected the slot, so an early cancel is not lost. The
    // signal is emitted where the coroutine runs: a slot is not thread-safe.
    record->owner_->arm_cancel(*record, [child] {
        asio::post(child->owner_->executor(),
                   [child] { child->cancel_signal_.emit(asio::cancellation_type::terminal); });
    });
}

} // namespace

void supervisor::start_coroutine(std::shared_ptr<detail::child_record> child,
                                 asio::awaitable<void> body) {
    start_coroutine_child(child, std::move(body));
}

void supervisor::start_coroutine(std::shared_ptr<detail::child_record> child,
                                 detail::unique_function<asio::awaitable<void>()> body) {
    start_coroutine_child(child, std::move(body));
}

void supervisor::start_blocking(std::shared_ptr<detail::child_record> child,
                                detail::unique_function<void(std::stop_token)> body) {
    asio::post(core_->pool(), [child, body = std::move(body)]() mutable {
        std::exception_ptr error;
        if (child->cancel_requested()) {
            // Cancelled while queued: it never runs.
            error = std::make_exception_ptr(boost::system::system_error(
                asio::error::operation_aborted, "warden: cancelled before it started"));
        } else {
            detail::current_child_scope scope(child.get());
            try {
                body(child->stop_.get_token());
            } catch (...) {
                error = std::current_exception();
            }
        }
        child->owner_->child_finished(*child, std::move(error));
    });
}

asio::awaitable<void> supervisor::join() {
    auto core = core_;
    core->check_not_own_child("join");
    auto executor = co_await asio::this_coro::executor;
    for (;;) {
        auto timer = std::make_shared<asio::steady_timer>(executor);
        {
            auto lock = core->lock();
            auto s = core->evaluate(lock, clock_type::now(), clock_type::time_point::max(), false);
            if (s.what == detail::supervisor_core::verdict::throw_error) {
                lock.unlock();
                std::rethrow_exception(s.error);
            }
            if (s.what == detail::supervisor_core::verdict::finished)
                co_return;
            timer->expires_at(s.wake_at);
            // Weak: a waker left behind (its join was cancelled) must not keep a timer
            // alive past its io_context (TSan, warden_stress under .ci/run tsan).
            core->on_next_change(lock, [weak = std::weak_ptr(timer), executor] {
                asio::post(executor, [weak] {
                    if (auto t = weak.lock())
                        t->cancel();
                });
            });
        }
        co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
        auto state = co_await asio::this_coro::cancellation_state;
        if (state.cancelled() != asio::cancellation_type::none)
            throw boost::system::system_error(asio::error::operation_aborted,
                                              "warden::supervisor::join");
    }
}

void supervisor::wait() {
    core_->wait(clock_type::time_point::max(), clock_type::duration::max(), nullptr, {});
}

void supervisor::wait_for(clock_type::duration timeout) {
    core_->wait(clock_type::now() + timeout, timeout, nullptr, {});
}

void supervisor::wait_until_impl(detail::function_ref<bool()> pred, clock_type::duration timeout,
                                 clock_type::duration poll) {
    core_->wait(clock_type::now() + timeout, timeout, &pred, poll);
}

void supervisor::notify() {
    core_->notify();
}
void supervisor::cancel() {
    core_->cancel();
}
std::stop_token supervisor::stop_token() const {
    return core_->stop_token();
}
std::vector<child_info> supervisor::children() const {
    return core_->children();
}
std::optional<failure_report> supervisor::first_failure() const {
    return core_->first_failure();
}
std::vector<failure_report> supervisor::failures() const {
    return core_->failures();
}
asio::any_io_executor supervisor::get_executor() const {
    return core_->executor();
}
const std::string& supervisor::name() const noexcept {
    return core_->options().name;
}

bool supervisor::failure_observed() const {
    return core_->failure_observed();
}

} // namespace warden
