#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <stop_token>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/asio/cancellation_signal.hpp>

#include <warden/detail/function.hpp>
#include <warden/detail/small_lock.hpp>
#include <warden/report.hpp>

namespace warden::detail {

class supervisor_core;
class child_table;
class live_list;
struct child_access;
struct stack_capture;
struct blocked_wait;

// One child's shared state. Private to warden: templates see its identity and how it ended;
// only src/ changes it (the supervisor, its table, and through child_access, the code that
// runs the body).
//
// Ownership: the supervisor's table holds a child from admission until its completion has
// been recorded; the running body (coroutine frame, pool job, process waiter) and every
// task handle hold it too, so the record outlives whichever of them ends last.
//
// States: running --cancel()--> cancelling --body ends--> done. `done_` goes true exactly
// once, after the supervisor has recorded the outcome (so a task that completes with a
// failure is already in sup.failures() when its awaiter resumes).
class child_record {
  public:
    child_record() = default;
    child_record(const child_record&) = delete;
    child_record& operator=(const child_record&) = delete;
    virtual ~child_record();

    // Written once at admission, before any other thread sees the record.
    std::uint64_t id() const noexcept { return id_; }
    const std::string& name() const noexcept { return name_; }
    child_kind kind() const noexcept { return kind_; }
    const std::source_location& where() const noexcept { return where_; }
    // Null outside a test.
    const std::shared_ptr<const std::string>& test() const noexcept { return test_; }
    // The child that spawned this one, if a child did.
    const std::string& parent() const noexcept { return parent_; }
    // Null under capture::location.
    const std::shared_ptr<const stack_capture>& spawn_stack() const noexcept {
        return spawn_stack_;
    }
    std::chrono::steady_clock::time_point started() const noexcept { return started_; }
    supervisor_core* owner() const noexcept { return owner_.get(); }

    // Acquire pairs with the release store in child_finished(): a reader that sees done also sees
    // error_ and the value.
    bool done() const noexcept { return done_.load(std::memory_order_acquire); }
    std::exception_ptr error() const noexcept { return error_; }

    // Requests cancellation: stop token, asio cancellation or SIGTERM, by kind.
    void cancel();
    // Blocks until done. Throws std::logic_error where that could never return (a child
    // waiting for itself, or a wait on the thread that runs the awaited coroutine), and
    // system_error(operation_aborted) when the calling child is cancelled meanwhile.
    void wait_done();
    // Runs fn once the child is done: at once on this thread if it already is, else on the
    // thread that completes it.
    void on_done(unique_function<void()> fn);
    bool cancel_requested() const noexcept {
        return cancel_requested_.load(std::memory_order_acquire);
    }

    // Gives the child its stop_source: only thread children whose body takes a
    // std::stop_token get one. Out of line: inlined into an optimised caller, g++ 12 warns
    // that the new stop_source may be used uninitialised (a false -Wmaybe-uninitialized in
    // users' builds with -Werror).
    void make_stoppable();

  private:
    friend class supervisor_core; // admission, cancellation, the end
    friend class child_table;     // identity
    friend class live_list;       // the table's links
    friend struct child_access;   // the code that runs the body (src/child_access.hpp)

    std::uint64_t id_ = 0;
    std::string name_;
    // The origin, but for what every child of a supervisor shares (its name) and what a
    // report adds (the symbolised stack): filled in by supervisor_core::origin_of().
    std::source_location where_;
    std::shared_ptr<const std::string> test_;
    std::string parent_;
    std::shared_ptr<const stack_capture> spawn_stack_;
    std::chrono::steady_clock::time_point started_;
    std::shared_ptr<supervisor_core> owner_;
    child_kind kind_ = child_kind::coroutine;

    // The small members side by side: one record per child, and 100k live children is a
    // use case (bench/memory_per_child.cpp).
    std::atomic<bool> cancel_requested_{false}; // set once, by the first cancel
    std::atomic<bool> done_{false};             // set once, by child_finished()
    mutable small_lock mutex_;
    bool cancel_delivered_ = false; // guarded by mutex_
    // A thread child: the kernel id of the pool thread running its body, 0 while queued and
    // after it ends. Read by the dump, which sends that thread a signal for its stack.
    // A coroutine child: the thread that last entered one of its handlers.
    std::atomic<int> running_on_{0};
    // A coroutine child: how many of its handlers run now, or the dump's mark while it reads
    // the await chain (src/coroutine_child.hpp keeps the rule).
    std::atomic<std::uint32_t> handlers_running_{0};
    // A coroutine child: its starter in co_spawn's entry frame, while that frame exists
    // (src/coroutine_child.hpp).
    std::atomic<void*> await_anchor_{nullptr};

    std::stop_source stop_{std::nostopstate};
    unique_function<void()> cancel_action_; // guarded by mutex_
    // A coroutine child's cancellation slot is bound to this signal; emitted on the
    // supervisor's executor by its cancel action.
    boost::asio::cancellation_signal cancel_signal_;
    // Most children have no callback: a vector only when one is added. Guarded by mutex_.
    std::unique_ptr<std::vector<unique_function<void()>>> on_done_;
    std::exception_ptr error_; // written before done_
    // The task::get this child is blocked in, woken by its cancellation; guarded by mutex_.
    blocked_wait* blocked_wait_ = nullptr;
    // Supervisors created while this child ran (on its thread or in its coroutine): cancelling
    // the child cancels them, so an outer failure reaches every leaf. Guarded by mutex_.
    std::unique_ptr<std::vector<std::weak_ptr<supervisor_core>>> nested_;

    // Links of the supervisor's table of running children (live_list in src/child_table.hpp),
    // guarded by the supervisor's mutex. `table_ref_` is the table's own reference.
    std::shared_ptr<child_record> table_ref_;
    child_record* table_prev_ = nullptr;
    child_record* table_next_ = nullptr;
};

template <class T>
class task_state final : public child_record {
  public:
    template <class... A>
    void set_value(A&&... a) {
        value_.emplace(std::forward<A>(a)...);
    }
    T take_value() {
        if constexpr (std::is_copy_constructible_v<T>)
            return *value_;
        else
            return std::move(*value_);
    }

  private:
    std::optional<T> value_;
};

template <>
class task_state<void> final : public child_record {};

} // namespace warden::detail
