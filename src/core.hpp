#pragma once

// The supervisor's state, shared by every kind of child. Private to src/.

#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <warden/detail/child.hpp>
#include <warden/detail/duration.hpp>
#include <warden/errors.hpp>
#include <warden/options.hpp>
#include <warden/report.hpp>

#include "body_outcome.hpp"
#include "child_table.hpp"
#include "executor_host.hpp"
#include "failure_ledger.hpp"
#include "stack.hpp"
#include "waiters.hpp"

namespace warden {
class process;
}

namespace warden::detail {

class process_state;

struct exception_description {
    std::string type;
    std::string what; // the type again when what() is empty or there is no what()
};
exception_description describe_exception(const std::exception_ptr& error);

// What the calling thread is to an executor. `io` is the io_context under it when this thread
// runs that context (a blocking wait here would stop the handlers the wait needs);
// `inside_strand`: this thread is running a handler of the executor's own strand; `context`:
// that io_context whichever thread runs it, if any does. Known executors: io_context's,
// strands of it, and children's executors wrapping either.
struct executor_thread {
    boost::asio::io_context* io = nullptr;
    bool strand = false;
    bool inside_strand = false;
    boost::asio::io_context* context = nullptr;

    // A handler for the executor may run right here, now, instead of being posted.
    bool may_run_here() const noexcept { return io != nullptr && (!strand || inside_strand); }
};
executor_thread thread_of(const boost::asio::any_io_executor& executor);
// Runs `fn` soon on the executor's thread, never inline. See supervisor.cpp.
void run_soon(const boost::asio::any_io_executor& executor, unique_function<void()> fn);

// The child currently running on this thread (blocking job, or coroutine resumed through
// child_executor); nullptr elsewhere. Written by current_child_scope only. Visible here, and
// current_child() inline, because the throw hook reads it on every throw of the program: outside
// a child that must cost a load and a branch (src/throw_hook.cpp declares it again, without
// this header).
extern constinit thread_local child_record* running_child_;
inline child_record* current_child() noexcept {
    return running_child_;
}
// The calling thread's kernel id (gettid), cached.
int this_thread_id() noexcept;

class current_child_scope {
  public:
    explicit current_child_scope(child_record* child) noexcept;
    ~current_child_scope();
    current_child_scope(const current_child_scope&) = delete;
    current_child_scope& operator=(const current_child_scope&) = delete;

  private:
    child_record* previous_;
};

class supervisor_core : public std::enable_shared_from_this<supervisor_core> {
  public:
    explicit supervisor_core(supervisor_options options);
    supervisor_core(boost::asio::any_io_executor executor, supervisor_options options);

    const supervisor_options& options() const noexcept { return options_; }
    boost::asio::any_io_executor executor() const { return host_.executor(); }
    // Where coroutine children are started (coroutine_child.cpp).
    executor_host& host() noexcept { return host_; }
    // Created by the first blocking spawn; throws spawn_error if it cannot be.
    blocking_pool& pool();
    // cancel_grace as a duration of the clock, never negative.
    std::chrono::steady_clock::duration cancel_grace() const noexcept;
    // A supervisor created while a child runs is cancelled with that child.
    void nest_in_running_child();

    // Fills the record's identity and origin and enters it in the table. Throws
    // supervisor_closed once the supervisor is cancelled or has failed.
    void admit(const std::shared_ptr<child_record>& child, child_kind kind, std::string name,
               const std::source_location& where);
    // Sets what cancel_child() does for this kind of child; delivers a cancel that came first.
    void arm_cancel(child_record& child, unique_function<void()> action);

    // The one path by which every kind of child ends. See supervisor.cpp.
    void child_finished(child_record& child, body_outcome outcome,
                        process_ending* ending = nullptr);
    void cancel_child(child_record& child);

    void cancel();
    void notify();
    std::stop_token stop_token() const { return stop_.token(); }

    // Blocking waits. `pred` may be empty.
    void wait(std::chrono::steady_clock::time_point deadline,
              std::chrono::steady_clock::duration timeout, function_ref<bool()>* pred,
              std::chrono::steady_clock::duration poll);

    // What a report needs from the table, taken under the lock and finished after it (what()
    // and the type name take microseconds, symbols milliseconds).
    struct report_draft {
        std::shared_ptr<failure_record> record;
        std::vector<std::shared_ptr<failure_record>> later; // the first failure's suppressed ones
        std::vector<std::string> stragglers;
        std::size_t later_not_kept = 0; // older suppressed ones let go (failure_ledger)

        // Without a lock: it may symbolise.
        failure_report write() const {
            return write_report(*record, later, stragglers, later_not_kept);
        }
    };
    enum class verdict { keep_waiting, finished, throw_error };
    struct step {
        verdict what = verdict::keep_waiting;
        std::vector<report_draft> reports;             // for throw_error
        bool group = false;                            // throw failure_group(reports)
        std::chrono::steady_clock::time_point wake_at; // for keep_waiting
        // Failures the ledger let go: destroyed with the step, after the unlock.
        std::vector<std::shared_ptr<failure_record>> let_go;
    };
    // Throws what a throw_error step decided. Call without the lock.
    [[noreturn]] void throw_failure(step s);
    // What throw_failure would throw, for a caller that hands it on (join): a child's own
    // exception is not thrown here. Call without the lock.
    std::exception_ptr failure_to_throw(step s);
    // Under fail_fast, requests the stop that a thrown failure must find done.
    void stop_before_throwing();
    // The decision every wait makes, under the lock. `at_once` throws the first failure
    // without waiting for the cancelled siblings (wait_until).
    step evaluate(std::unique_lock<std::mutex>& lock, std::chrono::steady_clock::time_point now,
                  std::chrono::steady_clock::time_point deadline, bool at_once);
    // Registers a one-shot callback run at the next settling change (every child done, a
    // failure, cancel). Caller holds the lock.
    void on_next_settlement(std::unique_lock<std::mutex>& lock, unique_function<void()> fn);
    // Posts to `executor` the hand-over of the failures' log lines still held back, if any:
    // join's waker calls it behind the parent's resumption (child_finished).
    void post_log_lines_hand_over(const boost::asio::any_io_executor& executor);
    std::unique_lock<std::mutex> lock() const;
    std::chrono::steady_clock::time_point failure_deadline_locked() const;

    std::vector<child_info> children(bool with_now) const;
    // The running children (the longest running first, at most max_listed of them, each with
    // its `now`) and the recently finished ones; `headline` replaces the first line.
    std::string dump(const std::string& headline = {}) const;
    std::optional<failure_report> first_failure() const;
    std::vector<failure_report> failures() const;
    [[noreturn]] void throw_join_timeout(std::chrono::steady_clock::duration timeout) const;
    // True once the first failure was thrown by a wait (the doctest watchdog asks).
    bool failure_observed() const;

    // Owns process objects until the supervisor ends, so `process&` stays valid; `state` is
    // the process's, whose line matcher shutdown() stops before the io_context.
    process& own_process(std::unique_ptr<process> p, std::shared_ptr<process_state> state);
    // The logic_error a blocking wait on the I/O thread or from a child would deserve.
    void check_can_block(const char* what) const;
    void check_not_own_child(const char* what) const;
    bool on_own_io_thread() const;

    void shutdown() noexcept;

  private:
    report_draft draft_locked(const std::shared_ptr<failure_record>& r, bool with_stragglers) const;
    // Without the spawn stack, which is symbolised only where a report needs it.
    warden::origin origin_of(const child_record& child) const;
    // What children() says of each of `children`; `now` (empty, or one entry each) is where
    // each one is.
    std::vector<child_info> infos_of(const std::vector<std::shared_ptr<child_record>>& children,
                                     std::vector<std::string> now) const;
    // Where each child is now (docs/hang-reports.md), taken without the lock. `states` holds
    // the process state of each process child among them (null for other kinds).
    std::vector<std::string>
    where_now(const std::vector<std::shared_ptr<child_record>>& children,
              const std::vector<std::shared_ptr<process_state>>& states) const;
    // Under the lock: the process state of each child (null where it has none, or where it
    // ended or is not watched yet).
    std::vector<std::shared_ptr<process_state>>
    process_states_locked(const std::vector<std::shared_ptr<child_record>>& children) const;
    // What a dump needs, copied under the lock; the text is made after it.
    struct dump_snapshot {
        std::vector<std::shared_ptr<child_record>> listed; // the longest running first
        std::vector<std::shared_ptr<process_state>> states;
        std::vector<finished_child> recent; // the newest first
        std::size_t running = 0;
        std::uint64_t finished = 0;
    };
    dump_snapshot snapshot_locked() const;
    // `now` is where_now(s.listed, s.states).
    std::string format_dump(const dump_snapshot& s, const std::vector<std::string>& now,
                            const std::string& headline) const;

    // How many children a report or a join_timeout names, the longest running first.
    static constexpr std::size_t max_listed = 32;

    // The steps of child_finished, in order.
    // `dropped`: the kept failure it pushed out, for the caller to destroy later.
    std::shared_ptr<failure_record> open_failure(const child_record& child,
                                                 const std::exception_ptr& error,
                                                 std::shared_ptr<failure_record>& dropped);
    // Under the lock: returns true if it is the first failure.
    bool record_failure_locked(std::shared_ptr<failure_record> failure);
    std::unique_ptr<std::vector<unique_function<void()>>>
    mark_done_locked(child_record& child, const std::exception_ptr& error);
    void cancel_siblings();
    void log_finished(const child_record& child, child_end end) const;
    void wait_for_children_to_end(std::unique_lock<std::mutex>& lock);
    void log_in_background(std::shared_ptr<failure_record> failure, bool first);
    void hand_over_log_lines();

    supervisor_options options_;
    executor_host host_;

    // Guards the table, the ledger, the waiters' counters, the phase and the process objects:
    // one lock, so that a child leaves the table, its failure is recorded and the waiters are
    // woken in one step.
    mutable std::mutex mutex_;
    // open --cancel()--> cancelled; open --first failure under fail_fast--> failed. Both
    // refuse new spawns (supervisor_closed); neither is ever left.
    enum class phase { open, cancelled, failed } phase_ = phase::open;
    child_table table_;
    failure_ledger ledger_;
    waiters waiters_;
    std::vector<std::unique_ptr<process>> processes_;
    // Every process's state until shutdown(), which stops their line matchers: a regex
    // wait_for_line may still be matching after its process ended.
    std::vector<std::shared_ptr<process_state>> process_states_;
    // The states of the processes still in the table, by record: a dump looks up the children
    // it lists here instead of scanning every process the supervisor ever started, since it
    // does that under the lock. An entry goes when child_finished() takes its child out.
    std::unordered_map<const child_record*, std::shared_ptr<process_state>> running_processes_;
    supervisor_stop stop_;
    spawn_stack_cache spawn_stacks_;
    // Failures' log lines owed and not yet handed to the symbolising thread: posted behind
    // the parent's resumption (child_finished, join's waker), and handed over by shutdown()
    // at the latest.
    struct pending_log_line {
        std::shared_ptr<failure_record> failure;
        bool first;
        std::shared_ptr<failure_record> dropped; // see child_finished
    };
    std::vector<pending_log_line> log_lines_to_hand_over_;

  public:
    // The entry of this core in the process-wide list that dump_all() reads (dump.cpp);
    // written by enlist() and delist() only.
    std::list<std::weak_ptr<supervisor_core>>::iterator enlisted_;
    bool is_enlisted_ = false;
};

// Enters a new supervisor in the list dump_all() reads, and takes it out when it ends.
void enlist(const std::shared_ptr<supervisor_core>& core);
void delist(supervisor_core& core) noexcept;

} // namespace warden::detail
