// The supervisor's rules. Each is kept by the code named here, and only there. The parts of
// its state are in their own headers: child_table.hpp (who runs, who finished lately),
// failure_ledger.hpp (the failures, the first first), waiters.hpp (how waits learn of a
// change), executor_host.hpp (where children run). One mutex guards the first three.
//
// 1. Who owns a child. supervisor_core::admit() enters the child record in the table before
//    its body can start; only child_finished() takes it out. While a record is in the table
//    the supervisor counts it as running, whatever kind it is.
//
// 2. One way to end. Every kind of child ends by a call to child_finished(child, error):
//    coroutine children from co_spawn's completion handler, blocking children at the end of
//    their pool job, processes and forked children from their exit wait (process_state.cpp).
//    Classifying the outcome, deciding the first failure, cancelling siblings, waking every
//    waiter and completing the task handle happen there and nowhere else, so no kind of
//    child can be reported differently from another, or twice.
//
// 3. The first failure. Decided under `mutex_`: the failure that finds the ledger empty is
//    the first. Under fail_fast the same critical section closes the supervisor
//    (phase failed). Later failures are appended; they become the `suppressed` lines of the
//    first report. An exception a child ends with after its cancellation was requested, and
//    that means "operation aborted" (or a spawn refused because of that cancellation), is the
//    child obeying the cancellation, not a failure. Stop is requested before any waiter
//    wakes, and the siblings are cancelled right after.
//
// 4. No child outlives its supervisor. ~supervisor cancels every child and waits until the
//    table is empty (wait_for_children_to_end), logging the stragglers; only then are the
//    I/O thread and the pool joined (executor_host::stop). Nothing is ever detached.
//
// 5. A supervisor created while a child runs belongs to that child's cancellation:
//    nest_in_running_child() registers it, cancel_child() cancels it, so an outer failure
//    reaches every leaf of every inner supervisor.

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string_view>

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <fmt/format.h>

#include "blocking_job.hpp"
#include "child_access.hpp"
#include "child_executor.hpp"
#include "core.hpp"
#include "coroutine_child.hpp"
#include "descendants.hpp"
#include "failure_record.hpp"
#include "join_bell.hpp"
#include "log.hpp"
#include "process_state.hpp"
#include "registry.hpp"
#include "stack.hpp"
#include "throw_site.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace warden::detail {

constinit thread_local child_record* running_child_ = nullptr;

exception_description describe_exception(const std::exception_ptr& error) {
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

namespace {

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
    } catch (const supervisor_closed&) {
        // A cancelled child that tries to spawn is refused: that ends it, as cancelled.
        return true;
    } catch (...) {
        return false;
    }
}

void throw_empty_task() {
    throw std::logic_error(
        "warden: task is empty (default-constructed or moved-from): it refers to no child");
}

// A task::get that a thread child is blocked in. Shared: the awaited child's on_done callback
// may outlive the wait.
struct blocked_wait {
    std::mutex mutex;
    std::condition_variable woken_cv;
    bool woken = false;

    void wake() {
        {
            std::lock_guard lock(mutex);
            woken = true;
        }
        woken_cv.notify_all();
    }
};

int this_thread_id() noexcept {
    // One system call per thread, not per child.
    thread_local const int id = static_cast<int>(::gettid());
    return id;
}

namespace {

executor_thread on_thread_of(const asio::io_context::executor_type& io) {
    return {io.running_in_this_thread() ? &io.context() : nullptr, false, false, &io.context()};
}

executor_thread on_thread_of(const asio::any_io_executor& executor) {
    return thread_of(executor);
}

template <class Inner>
executor_thread on_thread_of(const asio::strand<Inner>& strand) {
    auto here = on_thread_of(strand.get_inner_executor());
    here.strand = true;
    here.inside_strand = here.io != nullptr && strand.running_in_this_thread();
    return here;
}

template <class Inner>
executor_thread on_thread_of(const child_executor<Inner>& child) {
    return on_thread_of(child.inner());
}

template <class Executor, class... Rest>
bool find_thread_of(const asio::any_io_executor& executor, executor_thread& out) {
    if (const auto* e = executor.target<Executor>()) {
        out = on_thread_of(*e);
        return true;
    }
    if constexpr (sizeof...(Rest) > 0)
        return find_thread_of<Rest...>(executor, out);
    else
        return false;
}

} // namespace

// From the executor's own thread, through a timer that has already expired, not a post: on a
// one-thread io_context (io_context{1}, and a supervisor's own) a handler posted from a handler
// waits in that handler's private queue until it returns, and so does every completion that
// handler's work queues, such as a cancelled timer's. A supervisor's destructor waiting for
// its children may be that handler (an inner supervisor destroyed in a cancelled coroutine
// child); an expired timer is run by the destructor's own run_one, and what it queues is too
// (test: "nested: an outer failure reaches the leaves of an inner supervisor on the child's
// executor").
void run_soon(const asio::any_io_executor& executor, unique_function<void()> fn) {
    if (!thread_of(executor).may_run_here()) {
        asio::post(executor, std::move(fn));
        return;
    }
    auto timer =
        std::make_shared<asio::steady_timer>(executor, asio::steady_timer::time_point::min());
    timer->async_wait(
        [timer, fn = std::move(fn)](const boost::system::error_code&) mutable { fn(); });
}

executor_thread thread_of(const asio::any_io_executor& executor) {
    using io_executor = asio::io_context::executor_type;
    // What a coroutine's handlers carry: the same executor, tracking outstanding work.
    using io_tracked = std::decay_t<decltype(asio::prefer(
        std::declval<io_executor>(), asio::execution::outstanding_work.tracked))>;
    executor_thread out;
    find_thread_of<io_executor, child_executor<io_executor>, io_tracked, child_executor<io_tracked>,
                   asio::strand<io_executor>, child_executor<asio::strand<io_executor>>,
                   asio::strand<asio::any_io_executor>, child_executor<asio::any_io_executor>>(
        executor, out);
    return out;
}

current_child_scope::current_child_scope(child_record* child) noexcept
    : previous_(running_child_) {
    running_child_ = child;
}

current_child_scope::~current_child_scope() {
    running_child_ = previous_;
}

child_record::~child_record() = default;

void child_record::make_stoppable() {
    stop_ = std::stop_source();
}

void child_record::cancel() {
    if (owner_)
        owner_->cancel_child(*this);
}

void child_record::wait_done() {
    if (done())
        return;
    child_record* waiter = current_child();
    if (waiter == this)
        throw std::logic_error(fmt::format("warden: child {} waits for itself", name_));
    // Only a thread child can finish while the executor's thread is blocked here.
    if (owner_ && kind_ != child_kind::thread)
        owner_->check_can_block("task::get");
    if (waiter == nullptr) {
        done_.wait(false, std::memory_order_acquire);
        return;
    }
    // A child waiting for another ends its wait when it is cancelled itself: the awaited
    // child may be queued behind the waiter on a full pool, where only the waiter's end lets
    // it run (test: "bad input: task::get in a thread child on a full pool ends when
    // cancelled").
    auto wait = std::make_shared<blocked_wait>();
    on_done([wait] { wait->wake(); });
    {
        std::lock_guard lock(waiter->mutex_);
        if (!waiter->cancel_requested())
            waiter->blocked_wait_ = wait.get();
    }
    if (waiter->cancel_requested())
        wait->wake();
    {
        std::unique_lock lock(wait->mutex);
        wait->woken_cv.wait(lock, [&] { return wait->woken; });
    }
    {
        std::lock_guard lock(waiter->mutex_);
        waiter->blocked_wait_ = nullptr;
    }
    if (!done())
        throw boost::system::system_error(
            asio::error::operation_aborted,
            fmt::format("warden: task::get for {} ended: child {} was cancelled", name_,
                        waiter->name_));
}

void child_record::on_done(unique_function<void()> fn) {
    {
        std::lock_guard lock(mutex_);
        if (!done()) {
            if (!on_done_)
                on_done_ = std::make_unique<std::vector<unique_function<void()>>>();
            on_done_->push_back(std::move(fn));
            return;
        }
    }
    fn();
}

supervisor_core::supervisor_core(supervisor_options options)
    : options_(std::move(options)) {}

supervisor_core::supervisor_core(asio::any_io_executor executor, supervisor_options options)
    : options_(std::move(options))
    , host_(std::move(executor)) {}

blocking_pool& supervisor_core::pool() {
    return host_.pool(options_.threads, options_.name);
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
        child->spawn_stack_ = spawn_stacks_.capture(2); // admit() and supervisor::admit()
    child->owner_ = shared_from_this();
    phase refused_by = phase::open;
    {
        auto lock = this->lock();
        if (phase_ == phase::open)
            table_.enter(child, std::move(name));
        else
            refused_by = phase_;
    }
    if (refused_by != phase::open) {
        // A child of this supervisor that spawns after the supervisor closed, but before the
        // closing cancel reached it: it is being cancelled, and is now, so that the refusal
        // ends it as cancelled and not as a failure (test: "bad input: a spawn refused before
        // the supervisor's cancel reached the spawning child is no failure").
        if (parent != nullptr && parent->owner_.get() == this)
            cancel_child(*parent);
        throw supervisor_closed(
            fmt::format("warden: supervisor {} {}; spawn at {}:{} refused", options_.name,
                        refused_by == phase::cancelled ? "was cancelled" : "has failed",
                        where.file_name(), where.line()));
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
    std::vector<std::weak_ptr<supervisor_core>> nested;
    {
        std::lock_guard lock(child.mutex_);
        if (!child.done() && child.cancel_action_ && !child.cancel_delivered_) {
            child.cancel_delivered_ = true;
            child.cancel_action_();
        }
        if (child.blocked_wait_ != nullptr)
            child.blocked_wait_->wake();
        if (child.nested_)
            nested = *child.nested_;
    }
    // Outside the child's lock: cancelling an inner supervisor cancels its children in turn.
    for (auto& weak : nested)
        if (auto inner = weak.lock())
            inner->cancel();
}

void supervisor_core::nest_in_running_child() {
    child_record* parent = current_child();
    if (parent == nullptr)
        return;
    bool cancelled;
    {
        std::lock_guard lock(parent->mutex_);
        cancelled = parent->cancel_requested() || parent->done();
        if (!cancelled) {
            if (!parent->nested_)
                parent->nested_ = std::make_unique<std::vector<std::weak_ptr<supervisor_core>>>();
            std::erase_if(*parent->nested_, [](const auto& weak) { return weak.expired(); });
            parent->nested_->push_back(weak_from_this());
        }
    }
    // Created by a child that is being cancelled: it starts closed.
    if (cancelled)
        cancel();
}

namespace {

// Rule 2's classification, the one place it is made.
child_end classify(const child_record& child, const body_outcome& outcome) noexcept {
    switch (outcome.how()) {
    case body_outcome::ending::returned:
        return child_end::succeeded;
    case body_outcome::ending::stopped:
        return child_end::cancelled;
    case body_outcome::ending::threw:
        break;
    }
    return child.cancel_requested() && is_cancellation(outcome.error()) ? child_end::cancelled
                                                                        : child_end::failed;
}

// What the child's task throws: its own exception, or for a body warden stopped, the
// operation_aborted that every cancelled wait in Asio throws.
std::exception_ptr task_error(const child_record& child, body_outcome& outcome) {
    if (outcome.how() != body_outcome::ending::stopped)
        return outcome.error();
    return std::make_exception_ptr(boost::system::system_error(
        asio::error::operation_aborted,
        outcome.why().empty() ? fmt::format("warden: child {} was cancelled", child.name())
                              : outcome.why()));
}

} // namespace

// Rule 2. Every kind of child ends here, and these steps run in this order for each.
void supervisor_core::child_finished(child_record& child, body_outcome outcome,
                                     process_ending* ending) {
    const child_end end = classify(child, outcome);
    const bool failed = end == child_end::failed;
    const std::exception_ptr error = task_error(child, outcome);
    // Asked once: the count of lines owed and the line itself must agree, or a level changed
    // in between would leave the destructor waiting for a line that never comes.
    const bool log_failure = failed && log().should_log(spdlog::level::err);
    // The log line's hand-off to the symbolising thread wakes that thread: a system call, and
    // on a VM's idle core an interrupt to the host, ~20 us (bench_failure_latency). Made before
    // the parent runs, it delays the parent: a coroutine on this very thread, or a join on
    // another whose wake-up competes with it. So where the parent is a coroutine (this is the
    // executor's thread, or a join waits), the hand-off is posted behind the parent's
    // resumption. A blocking wait's thread is not the executor's: there the hand-off is made
    // here, after the waiters are woken (a post would wake the executor's thread instead).
    const bool on_executor_thread = thread_of(executor()).may_run_here();
    bool defer_log = false;
    const bool fail_fast = options_.policy == policy::fail_fast;

    // The oldest kept failure, when this one pushed it out: destroyed once the waiters are
    // woken, and with a deferred log line, after the parent has run (by the hand-over).
    std::shared_ptr<failure_record> dropped;
    std::shared_ptr<failure_record> failure;
    if (failed)
        failure = open_failure(child, error, dropped);

    child_table::evicted made_room; // destroyed after the unlock
    std::shared_ptr<child_record> keep_alive;
    decltype(running_processes_)::node_type process_entry; // freed after the unlock
    std::unique_ptr<std::vector<unique_function<void()>>> callbacks;
    bool first = false;
    {
        auto lock = this->lock();
        keep_alive = table_.leave(child, error, end, ending, made_room);
        if (child.kind_ == child_kind::process || child.kind_ == child_kind::forked)
            process_entry = running_processes_.extract(&child);
        if (failed)
            first = record_failure_locked(failure);
        callbacks = mark_done_locked(child, error);
        if (log_failure) {
            ledger_.owe_log_line();
            // In the same step as the line is owed: a wait for the owed lines finds it here or
            // handed over (shutdown).
            defer_log = on_executor_thread || waiters_.join_waits();
            if (defer_log)
                log_lines_to_hand_over_.push_back({failure, first, std::move(dropped)});
        }
        waiters_.notify_and_unlock(lock, failed || table_.running().empty(),
                                   first && fail_fast ? &stop_ : nullptr);
    }
    child.done_.notify_all();
    if (callbacks)
        for (auto& callback : *callbacks)
            callback();
    if (first && fail_fast)
        cancel_siblings();
    if (defer_log) {
        // Else a join waits, and its waker posts the hand-over behind its resumption (join()).
        if (on_executor_thread)
            post_log_lines_hand_over(executor());
    } else if (log_failure) {
        log_in_background(std::move(failure), first);
    } else if (!failed) {
        log_finished(child, end);
    }
}

// Nothing depends on the posted handler running (a caller's io_context may be stopped first):
// shutdown() hands over what is left before it waits for the lines.
void supervisor_core::post_log_lines_hand_over(const asio::any_io_executor& executor) {
    {
        auto lock = this->lock();
        if (log_lines_to_hand_over_.empty())
            return; // every join's wake-up comes here, a failure's only now and then
    }
    try {
        asio::post(executor, [weak = weak_from_this()] {
            if (auto core = weak.lock())
                core->hand_over_log_lines();
        });
    } catch (...) {
        hand_over_log_lines(); // no memory for the handler
    }
}

void supervisor_core::hand_over_log_lines() {
    std::vector<pending_log_line> lines;
    {
        auto lock = this->lock();
        lines.swap(log_lines_to_hand_over_);
    }
    for (auto& line : lines)
        log_in_background(std::move(line.failure), line.first);
}

// Nothing of the report's text is made here: the waiters and the siblings' cancellation come
// first, and the text is written by its first reader (report_for, the log).
std::shared_ptr<failure_record>
supervisor_core::open_failure(const child_record& child, const std::exception_ptr& error,
                              std::shared_ptr<failure_record>& dropped) {
    auto record = std::make_shared<failure_record>();
    record->spawn_stack = child.spawn_stack_;
    // The same exception object failed another child before (a nested supervisor's, or a
    // sibling whose task this child awaited): this report links to that one, so it names the
    // child that threw.
    record->passed_up_from = find_failure(error);
    auto& r = record->report;
    r.error = error;
    r.child = child.name_;
    r.kind = child.kind_;
    r.origin = origin_of(child);
    r.when = std::chrono::system_clock::now();
    dropped = remember_failure(record);
    return record;
}

// Rule 3.
bool supervisor_core::record_failure_locked(std::shared_ptr<failure_record> failure) {
    const bool first = ledger_.add(std::move(failure), clock_type::now());
    // Closed in the same step that makes this failure the first, so no child admitted after
    // it escapes the siblings' cancellation.
    if (first && options_.policy == policy::fail_fast)
        phase_ = phase::failed;
    return first;
}

// The child is done in the same step that takes it out of the table: a wait that returns
// because the table is empty finds every task done (lock order: the supervisor's mutex, then
// the child's). Returns the callbacks to run after the unlock.
std::unique_ptr<std::vector<unique_function<void()>>>
supervisor_core::mark_done_locked(child_record& child, const std::exception_ptr& error) {
    std::lock_guard child_lock(child.mutex_);
    child.error_ = error;
    child.cancel_action_ = {};
    child.nested_.reset();
    // Release: pairs with the acquire in done(); error_ and the value are visible.
    child.done_.store(true, std::memory_order_release);
    return std::move(child.on_done_);
}

// After the waiters were woken: with 100k siblings, taking the list costs milliseconds that
// the parent need not wait for. A sibling that ends meanwhile needs no cancelling.
void supervisor_core::cancel_siblings() {
    std::vector<std::shared_ptr<child_record>> siblings;
    {
        auto lock = this->lock();
        siblings.reserve(table_.running().size());
        for (const auto& sibling : table_.running())
            siblings.push_back(sibling);
    }
    for (auto& sibling : siblings)
        cancel_child(*sibling);
}

void supervisor_core::log_finished(const child_record& child, child_end end) const {
    if (log().should_log(spdlog::level::debug))
        log().debug("{}: {} ({}) finished after {}: {}", options_.name, child.name_,
                    to_string(child.kind_), format_running_for(clock_type::now() - child.started_),
                    end == child_end::cancelled ? "cancelled"
                    : child.cancel_requested()  ? "done after cancel"
                                                : "done");
}

// Writing a failure's log line symbolises its stacks: milliseconds, and a hundred the first
// time in a process (the debug information is loaded). Not on the thread that ended the child:
// that may be the I/O thread, whose other children's completions (the cancelled siblings a
// join waits for) would wait behind it. The supervisor's end waits for the lines it owes
// (shutdown), so none is lost and none outlives it.
void supervisor_core::log_in_background(std::shared_ptr<failure_record> failure, bool first) {
    run_on_symbolising_thread([core = shared_from_this(), failure = std::move(failure), first] {
        try {
            const auto r = kept_report(*failure);
            if (first)
                log().error("{}", r->to_string());
            else
                log().error("{} (after the first failure)\n{}", first_line(*r),
                            describe_origin(r->origin, "  "));
        } catch (...) {
            // Out of memory, or a broken sink: the failure still reached its waiters.
        }
        {
            std::lock_guard lock(core->mutex_);
            core->ledger_.log_line_written();
        }
        core->waiters_.wake_any();
    });
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

void supervisor_core::notify() {
    auto lock = this->lock();
    waiters_.notify_and_unlock(lock, false, nullptr);
}

void supervisor_core::on_next_settlement(std::unique_lock<std::mutex>&,
                                         unique_function<void()> fn) {
    waiters_.on_next_settlement(std::move(fn));
}

void supervisor_core::cancel() {
    std::vector<std::shared_ptr<child_record>> children;
    {
        auto lock = this->lock();
        if (phase_ == phase::open)
            phase_ = phase::cancelled;
        for (const auto& child : table_.running())
            children.push_back(child);
        waiters_.notify_and_unlock(lock, true, &stop_);
    }
    for (auto& child : children)
        cancel_child(*child);
}

origin supervisor_core::origin_of(const child_record& child) const {
    return {
        child.where_,  {}, child.test_ ? *child.test_ : std::string(), child.parent_, options_.name,
        outer_origin()};
}

// The records are read after the lock is released: what is read of them here was written
// once, at admission.
std::vector<child_info>
supervisor_core::infos_of(const std::vector<std::shared_ptr<child_record>>& children,
                          std::vector<std::string> now) const {
    const auto at = clock_type::now();
    std::vector<child_info> out;
    out.reserve(children.size());
    symbolise_batch symbolise;
    for (std::size_t i = 0; i < children.size(); ++i) {
        const auto& child = *children[i];
        child_info c{child.name_,
                     child.kind_,
                     child.cancel_requested() ? child_state::cancelling : child_state::running,
                     origin_of(child),
                     at - child.started_,
                     i < now.size() ? std::move(now[i]) : std::string()};
        if (child.spawn_stack_)
            c.origin.stacktrace = symbolise(*child.spawn_stack_);
        out.push_back(std::move(c));
    }
    return out;
}

supervisor_core::report_draft
supervisor_core::draft_locked(const std::shared_ptr<failure_record>& r,
                              bool with_stragglers) const {
    report_draft d{r, {}, {}};
    if (r == ledger_.first()) {
        d.later.assign(std::next(ledger_.all().begin()), ledger_.all().end());
        d.later_not_kept = ledger_.not_kept();
    }
    if (!with_stragglers)
        return d;
    // Bounded: a report must stay readable, and building it is on the parent's wake-up path.
    const auto now = clock_type::now();
    for (const auto& child : table_.running()) {
        if (d.stragglers.size() == max_listed) {
            d.stragglers.push_back(
                fmt::format("... and {} more", table_.running().size() - max_listed));
            break;
        }
        d.stragglers.push_back(fmt::format("{} ({}) running for {}", child->name_,
                                           to_string(child->kind_),
                                           format_running_for(now - child->started_)));
    }
    return d;
}

clock_type::time_point supervisor_core::failure_deadline_locked() const {
    return deadline_after(cancel_grace(), ledger_.first_at());
}

clock_type::duration supervisor_core::cancel_grace() const noexcept {
    return std::max(saturate(options_.cancel_grace), clock_type::duration::zero());
}

supervisor_core::step supervisor_core::evaluate(std::unique_lock<std::mutex>&,
                                                clock_type::time_point now,
                                                clock_type::time_point deadline, bool at_once) {
    // Under fail_fast only the first failure is ever thrown (later ones are its suppressed
    // lines); under collect, wait_until throws each failure once, join the rest as a group.
    const bool fail_fast = options_.policy == policy::fail_fast;
    auto first_unobserved = [&] { return ledger_.first_unobserved(fail_fast); };
    auto throw_first_unobserved = [&](bool gave_up_waiting) -> step {
        step s{verdict::throw_error, {}, false, {}, {}};
        const auto r = ledger_.observe_next(s.let_go);
        s.reports.push_back(draft_locked(r, gave_up_waiting));
        return s;
    };
    const bool unobserved = first_unobserved() != nullptr;
    if (unobserved && (fail_fast || at_once)) {
        // Thrown at once, the children still running are siblings being cancelled; after
        // the grace (or the caller's deadline) they are stragglers, and named as such.
        if (at_once || table_.running().empty())
            return throw_first_unobserved(false);
        if (now >= failure_deadline_locked() || now >= deadline)
            return throw_first_unobserved(true);
        return {
            verdict::keep_waiting, {}, false, std::min(failure_deadline_locked(), deadline), {}};
    }
    if (!table_.running().empty())
        return {verdict::keep_waiting, {}, false, deadline, {}};
    if (unobserved) {
        // Only what no wait has thrown yet: a failure is thrown once.
        step s{verdict::throw_error, {}, true, {}, {}};
        for (const auto& r : ledger_.observe_rest(s.let_go))
            s.reports.push_back(draft_locked(r, false));
        return s;
    }
    // wait_until keeps waiting on its predicate: until the deadline, not a moment in the past.
    return {verdict::finished, {}, false, deadline, {}};
}

void supervisor_core::throw_failure(step s) {
    if (!s.group)
        std::rethrow_exception(failure_to_throw(std::move(s)));
    stop_before_throwing();
    std::vector<failure_report> reports;
    reports.reserve(s.reports.size());
    for (auto& draft : s.reports)
        reports.push_back(draft.write());
    throw failure_group(std::move(reports));
}

std::exception_ptr supervisor_core::failure_to_throw(step s) {
    if (s.group) {
        try {
            throw_failure(std::move(s));
        } catch (...) {
            return std::current_exception();
        }
    }
    stop_before_throwing();
    // The child's own exception, at once: its report (with the later failures and the
    // stragglers) is written when report_for first asks for it.
    auto& draft = s.reports.front();
    remember_thrown(draft.record, {{draft.later.begin(), draft.later.end()},
                                   draft.later_not_kept,
                                   std::move(draft.stragglers)});
    return draft.record->report.error;
}

// A waiter may wake (on its own deadline) between the failure being recorded and the failing
// thread's stop request: the throw must not come before the stop.
void supervisor_core::stop_before_throwing() {
    if (options_.policy == policy::fail_fast)
        stop_.request();
}

void supervisor_core::check_not_own_child(const char* what) const {
    child_record* child = current_child();
    if (child != nullptr && child->owner_.get() == this)
        throw std::logic_error(fmt::format(
            "warden: {} called from inside child {} of supervisor {}: it would wait for itself",
            what, child->name_, options_.name));
}

bool supervisor_core::on_own_io_thread() const {
    return host_.on_own_io_thread();
}

void supervisor_core::check_can_block(const char* what) const {
    if (on_own_io_thread())
        throw std::logic_error(fmt::format(
            "warden: blocking {} on the I/O thread of supervisor {} would stop the coroutines "
            "it waits for; use co_await",
            what, options_.name));
    if (thread_of(host_.executor()).io != nullptr)
        throw std::logic_error(fmt::format(
            "warden: blocking {} on the thread that runs the executor of supervisor {} would "
            "stop the coroutines and processes it waits for; use co_await",
            what, options_.name));
}

void supervisor_core::wait(clock_type::time_point deadline, clock_type::duration timeout,
                           function_ref<bool()>* pred, clock_type::duration poll) {
    check_not_own_child("wait");
    check_can_block("wait");
    if (pred != nullptr && poll <= clock_type::duration::zero())
        throw std::invalid_argument(
            fmt::format("warden: wait_until on supervisor {}: poll must be positive, got {} ns",
                        options_.name, poll.count()));
    auto lock = this->lock();
    for (;;) {
        const auto now = clock_type::now();
        auto s = evaluate(lock, now, deadline, pred != nullptr);
        if (s.what == verdict::throw_error) {
            lock.unlock();
            throw_failure(std::move(s));
        }
        if (pred != nullptr) {
            const auto seen = waiters_.changes(waiters::kind::any);
            lock.unlock();
            const bool ready = (*pred)();
            lock.lock();
            if (ready) {
                // A failure recorded while pred ran wins: pred may be true only because the
                // failing child is gone (the stress program's seed 7, run 12075).
                auto again = evaluate(lock, clock_type::now(), deadline, true);
                if (again.what == verdict::throw_error) {
                    lock.unlock();
                    throw_failure(std::move(again));
                }
                return;
            }
            if (waiters_.changes(waiters::kind::any) != seen)
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
            wake = std::min(wake, deadline_after(poll, now));
        const auto kind = pred != nullptr ? waiters::kind::any : waiters::kind::settling;
        waiters_.wait_for_change(lock, kind, wake);
    }
}

void supervisor_core::throw_join_timeout(clock_type::duration timeout) const {
    dump_snapshot s;
    {
        // Only references and copies are taken under the lock; the rest is read after it.
        auto lock = this->lock();
        s = snapshot_locked();
    }
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    auto now = where_now(s.listed, s.states);
    auto text = format_dump(s, now,
                            fmt::format("warden: supervisor {}: {} child{} still running "
                                        "after {} ms",
                                        options_.name, s.running, s.running == 1 ? "" : "ren",
                                        millis.count()));
    throw join_timeout(options_.name, millis, infos_of(s.listed, std::move(now)),
                       s.running - s.listed.size(), std::move(text));
}

std::vector<child_info> supervisor_core::children(bool with_now) const {
    std::vector<std::shared_ptr<child_record>> live;
    std::vector<std::shared_ptr<process_state>> states;
    {
        auto lock = this->lock();
        live.reserve(table_.running().size());
        for (const auto& child : table_.running())
            live.push_back(child);
        if (with_now)
            states = process_states_locked(live);
    }
    return infos_of(live, with_now ? where_now(live, states) : std::vector<std::string>());
}

std::optional<failure_report> supervisor_core::first_failure() const {
    std::optional<report_draft> draft;
    {
        auto lock = this->lock();
        if (ledger_.empty())
            return std::nullopt;
        draft = draft_locked(ledger_.first(), false);
    }
    return draft->write();
}

std::vector<failure_report> supervisor_core::failures() const {
    std::vector<report_draft> drafts;
    {
        auto lock = this->lock();
        // The first gets its suppressed lines, the others none.
        for (const auto& r : ledger_.all())
            drafts.push_back(draft_locked(r, false));
    }
    std::vector<failure_report> out;
    out.reserve(drafts.size());
    for (auto& d : drafts)
        out.push_back(d.write());
    return out;
}

bool supervisor_core::failure_observed() const {
    auto lock = this->lock();
    return ledger_.first_observed();
}

process& supervisor_core::own_process(std::unique_ptr<process> p,
                                      std::shared_ptr<process_state> state) {
    auto lock = this->lock();
    // A quick child may have finished before it was owned: a dump must not find it running.
    // Done is set in the critical section that takes a child out of the table.
    if (!state->record()->done()) {
        try {
            running_processes_.emplace(state->record().get(), state);
        } catch (const std::bad_alloc&) {
            // The dump then shows it as "starting": better than a spawn that throws while its
            // process runs on.
        }
    }
    process_states_.push_back(std::move(state));
    processes_.push_back(std::move(p));
    return *processes_.back();
}

namespace {

// Tells whether anything runs an executor's handlers, for the destructor's warning: a handler
// posted to it that has not run a second later means nothing does (or it is swamped).
class context_probe {
  public:
    void post(const asio::any_io_executor& executor) noexcept {
        try {
            auto ran = std::make_shared<std::atomic<bool>>(false);
            asio::post(executor, [ran] { ran->store(true, std::memory_order_release); });
            ran_ = std::move(ran);
            posted_at_ = clock_type::now();
        } catch (...) {
            ran_.reset(); // no memory: no diagnosis
        }
    }
    bool ran() const noexcept { return !ran_ || ran_->load(std::memory_order_acquire); }

    // Empty when the executor's handlers run, as far as can be told. `context`: the executor's
    // io_context, if it has one (executor_thread::context).
    std::string why_stalled(const asio::io_context* context, clock_type::time_point now) {
        if (context != nullptr && context->stopped())
            return "its io_context is stopped, and coroutine children and processes end in its "
                   "handlers: they end once it runs again (keep it running until the supervisor "
                   "is destroyed)";
        if (ran() || now - posted_at_ < std::chrono::seconds(1))
            return {};
        return fmt::format("a handler posted to its executor {} ago has not run: nothing runs it, "
                           "and coroutine children and processes end in its handlers (keep it "
                           "running until the supervisor is destroyed)",
                           format_running_for(now - posted_at_));
    }

  private:
    std::shared_ptr<std::atomic<bool>> ran_;
    clock_type::time_point posted_at_;
};

} // namespace

// Waits until the table is empty. Where this thread is one the children need (it runs the
// executor they complete on), it runs that executor's handlers while it waits, rather than
// block them: an inner supervisor made on a coroutine child's executor is destroyed there
// when the outer one cancels that child (test: "nested: an outer failure reaches the leaves
// of an inner supervisor on the child's executor").
void supervisor_core::wait_for_children_to_end(std::unique_lock<std::mutex>& lock) {
    const auto here = thread_of(host_.executor());
    // The child that runs this destructor cannot end before the destructor returns, and the
    // supervisor cannot end before its children: a wait here would never end (it warned once
    // a second, forever). As for the I/O thread below, the program ends, saying why. Tests:
    // "destroying a supervisor from inside its own thread child ends the program, naming it",
    // and its coroutine twin (tests/test_forked.cpp).
    if (child_record* self = current_child();
        self != nullptr && self->owner_.get() == this && !self->done()) {
        log().critical("{}: destroyed from inside its own child {} ({}, spawned at {}:{}); a "
                       "supervisor cannot wait for the child that destroys it, nor end before "
                       "it",
                       options_.name, self->name_, to_string(self->kind_),
                       self->where().file_name(), self->where().line());
        std::terminate();
    }
    if (on_own_io_thread() && !table_.running().empty()) {
        log().critical("{}: destroyed from its own I/O thread with {} children running; they "
                       "cannot end while it waits for them",
                       options_.name, table_.running().size());
        std::terminate();
    }
    // Inside a handler of its own strand, nothing that runs on the strand can end before this
    // handler returns: coroutine children, and processes' exit handlers. They are cancelled
    // and end right after it (their records keep this core alive); only thread children are
    // waited for here (test: "nested: an inner supervisor on a strand, destroyed in its
    // cancelled child, does not end the program").
    const bool strand_bound = here.inside_strand;
    auto waiting_for = [&] {
        if (!strand_bound)
            return table_.running().size();
        std::size_t threads = 0;
        for (const auto& child : table_.running())
            threads += child->kind_ == child_kind::thread;
        return threads;
    };
    // The first warning after cancel_grace, then at most one a second.
    const auto grace = cancel_grace();
    const auto warn_every = std::max<clock_type::duration>(grace, std::chrono::seconds(1));
    auto warn_at = deadline_after(grace);
    // Where the children need handlers that no thread here runs, a child that does not end may
    // not be ignoring its cancellation at all: nothing runs its executor (a caller's io_context
    // stopped, or not run any more). A handler posted now tells, by the next warning.
    context_probe probe;
    const bool probe_executor = here.io == nullptr && !strand_bound;
    auto post_probe = [&] {
        // Not under the supervisor's lock: the executor may be anyone's.
        lock.unlock();
        probe.post(host_.executor());
        lock.lock();
    };
    if (probe_executor && waiting_for() > 0)
        post_probe();
    while (waiting_for() > 0) {
        const auto now = clock_type::now();
        if (now >= warn_at) {
            std::string names;
            for (const auto& child : table_.running()) {
                names += fmt::format(" {} ({})", child->name_, to_string(child->kind_));
                if (names.size() > 4096) {
                    names += " ...";
                    break;
                }
            }
            const bool one = table_.running().size() == 1;
            // Thread children do not need the executor to end.
            bool need_executor = false;
            for (const auto& child : table_.running())
                need_executor = need_executor || child->kind_ != child_kind::thread;
            const std::string stalled =
                need_executor ? probe.why_stalled(here.context, now) : std::string();
            if (stalled.empty())
                log().warn("{}: destructor waits for {} child{} that ignore{} cancellation:{}",
                           options_.name, table_.running().size(), one ? "" : "ren", one ? "s" : "",
                           names);
            else
                log().warn("{}: destructor waits for {} child{}:{}; {}", options_.name,
                           table_.running().size(), one ? "" : "ren", names, stalled);
            warn_at = deadline_after(warn_every, now);
            if (probe_executor && probe.ran())
                post_probe();
        }
        if (here.io != nullptr && !strand_bound && !here.io->stopped()) {
            lock.unlock();
            here.io->run_one_until(warn_at);
            lock.lock();
            continue;
        }
        // A thread child ending with coroutines left in the table does not settle it.
        waiters_.wait_until(lock, strand_bound ? waiters::kind::any : waiters::kind::settling,
                            warn_at, [&] { return waiting_for() == 0; });
    }
    if (!table_.running().empty())
        log().warn("{}: destroyed inside a handler of its own strand: {} cancelled child{} end "
                   "when that handler returns (co_await join() first to wait for them)",
                   options_.name, table_.running().size(),
                   table_.running().size() == 1 ? "" : "ren");
}

void supervisor_core::shutdown() noexcept {
    try {
        cancel();
        std::optional<report_draft> unjoined;
        {
            auto lock = this->lock();
            wait_for_children_to_end(lock);
            while (ledger_.log_lines_owed()) {
                if (!log_lines_to_hand_over_.empty()) {
                    lock.unlock();
                    hand_over_log_lines();
                    lock.lock();
                    continue;
                }
                // The lines' jobs would otherwise wait out their delay (stack.hpp).
                lock.unlock();
                expedite_symbolising_thread();
                lock.lock();
                waiters_.wait(lock, waiters::kind::any, [this] {
                    return !ledger_.log_lines_owed() || !log_lines_to_hand_over_.empty();
                });
            }
            if (!ledger_.empty() && !ledger_.first_observed())
                unjoined = draft_locked(ledger_.first(), false);
        }
        if (unjoined)
            log().error("{}: failure nobody joined:\n{}", options_.name,
                        unjoined->write().to_string());
    } catch (...) {
        // Logging failed (out of memory, a broken sink): waiting above still happened.
    }
    // A descendant its sweep killed may not have ended yet (the scheduler did not run it in
    // time): none is left a zombie of the program once the supervisor is gone.
    reap_killed_descendants(
        std::min<std::chrono::milliseconds>(options_.cancel_grace, std::chrono::seconds(10)));
    // Every process has finished, but a regex wait_for_line may still be matching (a runaway
    // pattern): abandoned here, its verdicts are posted before the io_context stops.
    std::vector<std::shared_ptr<process_state>> states;
    decltype(running_processes_) running; // each state holds this core: no cycle may outlive this
    {
        auto lock = this->lock();
        states.swap(process_states_);
        running.swap(running_processes_);
    }
    for (const auto& state : states)
        state->stop_matching();
    states.clear();
    running.clear();
    host_.stop();
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
    : core_(std::make_shared<detail::supervisor_core>(std::move(options))) {
    core_->nest_in_running_child();
    detail::enlist(core_);
}

supervisor::supervisor(asio::any_io_executor executor, supervisor_options options)
    : core_(std::make_shared<detail::supervisor_core>(std::move(executor), std::move(options))) {
    core_->nest_in_running_child();
    detail::enlist(core_);
}

supervisor::~supervisor() {
    detail::delist(*core_);
    core_->shutdown();
}

void supervisor::admit(const std::shared_ptr<detail::child_record>& child, child_kind kind,
                       spawn_options options, const std::source_location& where) {
    // The pool exists before the child is admitted: a pool that cannot be created fails the
    // spawn with no record left in the table.
    if (kind == child_kind::thread)
        core_->pool();
    core_->admit(child, kind, std::move(options.name), where);
}

void supervisor::start_coroutine(std::shared_ptr<detail::child_record> child,
                                 asio::awaitable<void> body) {
    detail::co_spawn_child(child, std::move(body));
}

void supervisor::start_coroutine(std::shared_ptr<detail::child_record> child,
                                 detail::unique_function<asio::awaitable<void>()> body) {
    detail::co_spawn_child(child, std::move(body));
}

void supervisor::start_coroutine(std::shared_ptr<detail::child_record> child,
                                 detail::coroutine_maker body) {
    detail::co_spawn_child(child, std::move(body));
}

void supervisor::start_blocking(std::shared_ptr<detail::child_record> child,
                                detail::unique_function<void(std::stop_token)> body) {
    asio::post(core_->pool().executor(), detail::blocking_job{std::move(child), std::move(body)});
}

namespace detail {

void blocking_job::operator()() {
    supervisor_core* owner = child->owner(); // null for the warm-up's child
    if (child->cancel_requested()) {
        owner->child_finished(*child, body_outcome::stopped("warden: cancelled before it started"));
        return;
    }
    std::exception_ptr error;
    {
        current_child_scope scope(child.get());
        // Relaxed: the dump only uses it to pick a thread to ask, and checks again after.
        child_access::running_on(*child).store(this_thread_id(), std::memory_order_relaxed);
        try {
            body(child_access::stop_token(*child));
        } catch (...) {
            error = std::current_exception();
        }
        child_access::running_on(*child).store(0, std::memory_order_relaxed);
    }
    if (owner != nullptr) [[likely]]
        owner->child_finished(*child, body_outcome::threw(std::move(error)));
}

blocking_job blocking_job::warm_up() {
    auto child = std::make_shared<task_state<void>>();
    child_access::spawn_stack(*child) = capture_stack(0);
    return {std::move(child), [](std::stop_token) { throw std::runtime_error("warm-up"); }};
}

} // namespace detail

namespace {

// Makes `error` what the coroutine that awaits this (join) ends with: set in its frame, as
// Asio sets an exception that leaves a coroutine's body, and rethrown once, by the caller's
// co_await. Thrown in join's body, the child's exception would be thrown twice: out of the
// body into join's frame, then out of the frame into the caller, each throw and catch some
// microseconds on the path from a failure to the parent (bench_failure_latency).
// `co_await end_with(std::move(e)); co_return;`: a function of the frame is Asio's own form for
// an operation started once the frame is suspended (Boost 1.81, asio/impl/awaitable.hpp); the
// frame is resumed at once. await_transform moves the function, so the temporary that g++ 12
// may destroy twice holds no exception by then.
class end_with {
  public:
    explicit end_with(std::exception_ptr error) noexcept
        : error_(std::move(error)) {}

    asio::detail::awaitable_thread<asio::any_io_executor>*
    operator()(asio::detail::awaitable_frame_base<asio::any_io_executor>* frame) noexcept {
        frame->set_except(std::move(error_));
        return nullptr;
    }

  private:
    std::exception_ptr error_;
};

} // namespace

// The awaiting coroutine's cancellation enters the supervisor here: join cancels the children
// and waits for them (at most cancel_grace), since none may outlive the scope that awaited
// them. A failure recorded before or meanwhile is what it throws; else operation_aborted
// (tests: "co_await join cancelled by its parent cancels the children on io_context{1}",
// "a failure recorded before the parent's cancellation is what join throws").
asio::awaitable<void> supervisor::join() {
    using verdict = detail::supervisor_core::verdict;
    auto core = core_;
    core->check_not_own_child("join");
    auto executor = co_await asio::this_coro::executor;
    bool parent_cancelled = false;
    bool parent_throws_if_cancelled = true;
    auto give_up_at = clock_type::time_point::max();
    // A child that ends on another thread rings it; null: it posts. Made the first time the
    // join has to wait: an eventfd and its registration are system calls, several times
    // what a join that returns at once costs (0.7 -> 3.1 us when made up front).
    std::unique_ptr<detail::join_bell> bell;
    bool bell_tried = false;
    for (;;) {
        auto timer = std::make_shared<asio::steady_timer>(executor);
        // Cancels the timer: the parent's resumption is queued; a failure's log line is
        // handed over after it, behind the parent (child_finished). Weak: a waker left behind
        // (its join was cancelled) must not keep a timer alive past its io_context (TSan,
        // warden_stress under .ci/run tsan).
        auto wake = [weak = std::weak_ptr(timer), executor, weak_core = std::weak_ptr(core)] {
            if (auto t = weak.lock())
                t->cancel();
            if (auto c = weak_core.lock())
                c->post_log_lines_hand_over(executor);
        };
        if (bell)
            bell->arm(wake); // before the waker is registered: no ring can come before it
        std::optional<detail::supervisor_core::step> failure;
        bool finished = false;
        bool make_bell = false;
        {
            auto lock = core->lock();
            const auto now = clock_type::now();
            auto s = core->evaluate(lock, now, give_up_at, false);
            if (s.what == verdict::throw_error) {
                failure = std::move(s);
            } else if (s.what == verdict::finished || now >= give_up_at) {
                finished = true;
            } else if (!bell_tried) {
                make_bell = true; // outside the lock; then the state is read again
            } else {
                timer->expires_at(std::min(s.wake_at, give_up_at));
                // On the timer's own thread, woken at once: the resumption is then also ahead
                // of whatever the ending child queues after it. From another thread, by the
                // bell (join_bell.hpp says why not a post).
                core->on_next_settlement(
                    lock, [wake, executor,
                           ringer = bell ? bell->ringer()
                                         : std::weak_ptr<detail::join_bell::descriptor>()] {
                        if (detail::thread_of(executor).may_run_here())
                            wake();
                        else if (!detail::join_bell::ring(ringer))
                            asio::post(executor, wake);
                    });
            }
        }
        if (make_bell) {
            bell_tried = true;
            bell = detail::join_bell::make(executor);
            continue;
        }
        // Ending here, the join drops its bell with its frame, and an armed wait with it.
        if (failure || finished) {
            if (parent_cancelled)
                co_await asio::this_coro::throw_if_cancelled(parent_throws_if_cancelled);
            if (failure) {
                // Named first: g++ 12 destroys a temporary argument inside a co_await
                // expression twice (docs/decisions.md); end_with's own is empty by then.
                std::exception_ptr error = core->failure_to_throw(std::move(*failure));
                co_await end_with(std::move(error));
                co_return;
            }
            if (parent_cancelled)
                throw boost::system::system_error(asio::error::operation_aborted,
                                                  "warden::supervisor::join cancelled");
            co_return;
        }
        co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
        if (bell)
            bell->disarm(); // the deadline, or the parent's cancellation, came first
        if (parent_cancelled)
            continue;
        auto state = co_await asio::this_coro::cancellation_state;
        if (state.cancelled() == asio::cancellation_type::none)
            continue;
        parent_cancelled = true;
        // The waits below must not throw at once, as a cancelled coroutine's next co_await
        // does by default; the caller's setting is restored before join ends.
        parent_throws_if_cancelled = co_await asio::this_coro::throw_if_cancelled();
        co_await asio::this_coro::throw_if_cancelled(false);
        core->cancel();
        give_up_at = detail::deadline_after(core->cancel_grace());
    }
}

void supervisor::wait() {
    core_->wait(clock_type::time_point::max(), clock_type::duration::max(), nullptr, {});
}

void supervisor::wait_for_impl(clock_type::duration timeout) {
    core_->wait(detail::deadline_after(timeout), timeout, nullptr, {});
}

void supervisor::wait_until_impl(detail::function_ref<bool()> pred, clock_type::duration timeout,
                                 clock_type::duration poll) {
    core_->wait(detail::deadline_after(timeout), timeout, &pred, poll);
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
    return core_->children(false);
}
std::vector<child_info> supervisor::children(with_stacks_t) const {
    return core_->children(true);
}
std::string supervisor::dump() const {
    return core_->dump();
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
