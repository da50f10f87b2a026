#pragma once

#include <chrono>
#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <source_location>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <warden/detail/child.hpp>
#include <warden/detail/duration.hpp>
#include <warden/detail/function.hpp>
#include <warden/detail/spawn.hpp>
#include <warden/errors.hpp>
#include <warden/options.hpp>
#include <warden/report.hpp>
#include <warden/task.hpp>

namespace warden {

class process;

// A nursery for threads, coroutines and processes. The first child failure reaches the
// parent (join/wait), with where the child was spawned; no child outlives the supervisor.
class supervisor {
  public:
    supervisor()
        : supervisor(supervisor_options{}) {}
    explicit supervisor(supervisor_options options);
    // Coroutine children run on `executor` (the caller runs its context). With a
    // multi-threaded io_context, pass a strand.
    explicit supervisor(boost::asio::any_io_executor executor, supervisor_options options = {});
    supervisor(const supervisor&) = delete;
    supervisor& operator=(const supervisor&) = delete;
    // Cancels what still runs and waits for it; never throws.
    ~supervisor();

    // f() returning asio::awaitable<T>: a coroutine child. f() or f(std::stop_token)
    // returning T: a blocking child on the supervisor's thread pool.
    //
    // Overloads rather than a defaulted spawn_options: g++ 12 destroys a temporary twice
    // when it is an argument of a call inside a co_await expression (see docs/decisions.md),
    // and `co_await sup.spawn(f)` must be safe. With options inside co_await, name the task:
    // `auto t = sup.spawn(f, {.name = "x"}); co_await t;`.
    template <class F>
    auto spawn(F&& f, std::source_location where = std::source_location::current()) {
        return spawn(std::forward<F>(f), spawn_options{}, where);
    }
    template <class F>
    auto spawn(F&& f, spawn_options options,
               std::source_location where = std::source_location::current());

    template <class T>
    task<T> spawn(boost::asio::awaitable<T> body,
                  std::source_location where = std::source_location::current()) {
        return spawn(std::move(body), spawn_options{}, where);
    }
    template <class T>
    task<T> spawn(boost::asio::awaitable<T> body, spawn_options options,
                  std::source_location where = std::source_location::current()) {
        auto state = std::make_shared<detail::task_state<T>>();
        admit(state, child_kind::coroutine, std::move(options), where);
        if constexpr (std::is_void_v<T>)
            start_coroutine(state, std::move(body));
        else
            start_coroutine(state, detail::run_awaitable_child<T>(state, std::move(body)));
        return task<T>(std::move(state));
    }

    process& spawn_process(process_options options,
                           std::source_location where = std::source_location::current());
    // The same, where failing to start is expected: what spawn_error would say (no such
    // program, not executable, a resource limit, bad input) goes to `ec`, and the result is
    // null. A spawn refused by a closed supervisor still throws supervisor_closed.
    process* spawn_process(process_options options, std::error_code& ec,
                           std::source_location where = std::source_location::current());

    template <class F>
    requires std::invocable < std::decay_t<F>
    & > process& spawn_forked(F&& f, std::source_location where = std::source_location::current()) {
        return spawn_forked(std::forward<F>(f), spawn_options{}, where);
    }
    template <class F>
    requires std::invocable < std::decay_t<F>
    & > process& spawn_forked(F&& f, spawn_options options,
                              std::source_location where = std::source_location::current()) {
        return start_forked(detail::unique_function<void()>(std::forward<F>(f)), std::move(options),
                            where);
    }

    // Returns once every child has finished. Under fail_fast, throws the first failure (the
    // child's own exception object) once the cancelled siblings finish or cancel_grace ends.
    // Under collect, throws failure_group if any child failed. A failure is thrown once.
    //
    // If the coroutine awaiting join() is cancelled, join cancels every child, waits for them
    // (at most cancel_grace), then throws the first failure if one was recorded, else
    // system_error(operation_aborted).
    boost::asio::awaitable<void> join();
    void wait();
    // Every duration saturates: `wait_for(std::chrono::hours::max())` waits without a limit.
    template <class Rep, class Period>
    void wait_for(std::chrono::duration<Rep, Period> timeout) {
        wait_for_impl(detail::saturate(timeout));
    }

    // Returns once pred() is true: checked every `poll` (10 ms by default; max() means only
    // after notify() and child changes), after notify(), and whenever a child finishes. Throws
    // a child's failure the moment it happens, join_timeout at `timeout`, and
    // std::invalid_argument if `poll` is not positive.
    template <class Pred, class Rep, class Period>
    void wait_until(Pred&& pred, std::chrono::duration<Rep, Period> timeout) {
        wait_until(std::forward<Pred>(pred), timeout, std::chrono::milliseconds(10));
    }
    template <class Pred, class Rep, class Period, class PollRep, class PollPeriod>
    void wait_until(Pred&& pred, std::chrono::duration<Rep, Period> timeout,
                    std::chrono::duration<PollRep, PollPeriod> poll) {
        auto check = [&]() -> bool { return static_cast<bool>(pred()); };
        wait_until_impl(check, detail::saturate(timeout), detail::saturate(poll));
    }
    void notify();

    void cancel();
    // Stop is requested when the supervisor is cancelled or fails (fail_fast).
    std::stop_token stop_token() const;

    std::vector<child_info> children() const;
    std::vector<child_info> children(with_stacks_t) const;
    // Every running child with its origin and where it is now, then the children that
    // finished most recently with their outcome: what a person reads to find a hang.
    std::string dump() const;
    std::optional<failure_report> first_failure() const;
    std::vector<failure_report> failures() const;

    boost::asio::any_io_executor get_executor() const;
    const std::string& name() const noexcept;
    // True once the first failure has been thrown by a wait (for test-framework watchdogs).
    bool failure_observed() const;

  private:
    void admit(const std::shared_ptr<detail::child_record>& child, child_kind kind,
               spawn_options options, const std::source_location& where);
    void start_coroutine(std::shared_ptr<detail::child_record> child,
                         boost::asio::awaitable<void> body);
    void start_coroutine(std::shared_ptr<detail::child_record> child,
                         detail::unique_function<boost::asio::awaitable<void>()> body);
    void start_coroutine(std::shared_ptr<detail::child_record> child, detail::coroutine_maker body);
    void start_blocking(std::shared_ptr<detail::child_record> child,
                        detail::unique_function<void(std::stop_token)> body);
    process& start_forked(detail::unique_function<void()> body, spawn_options options,
                          const std::source_location& where);
    void wait_for_impl(std::chrono::steady_clock::duration timeout);
    void wait_until_impl(detail::function_ref<bool()> pred,
                         std::chrono::steady_clock::duration timeout,
                         std::chrono::steady_clock::duration poll);

    std::shared_ptr<detail::supervisor_core> core_;
};

template <class F>
auto supervisor::spawn(F&& f, spawn_options options, std::source_location where) {
    using fn_type = std::decay_t<F>;
    if constexpr (detail::returns_awaitable<fn_type>::value) {
        using value_type = typename detail::returns_awaitable<fn_type>::value_type;
        auto state = std::make_shared<detail::task_state<value_type>>();
        admit(state, child_kind::coroutine, std::move(options), where);
        if constexpr (std::is_void_v<value_type> &&
                      (std::is_empty_v<fn_type> || std::is_pointer_v<fn_type>)) {
            // Nothing captured that the coroutine could refer to: made where it starts, and
            // co_spawn runs it as it would a plain awaitable (no callable in its frame).
            start_coroutine(state, detail::coroutine_maker{fn_type(std::forward<F>(f))});
        } else if constexpr (std::is_void_v<value_type>)
            start_coroutine(state, detail::unique_function<boost::asio::awaitable<void>()>(
                                       fn_type(std::forward<F>(f))));
        else
            start_coroutine(
                state, detail::run_coroutine_child<value_type>(state, fn_type(std::forward<F>(f))));
        return task<value_type>(std::move(state));
    } else if constexpr (std::is_invocable_v<fn_type&, std::stop_token> ||
                         std::is_invocable_v<fn_type&>) {
        constexpr bool takes_token = std::is_invocable_v<fn_type&, std::stop_token>;
        using value_type = typename detail::blocking_result<fn_type>::type;
        auto state = std::make_shared<detail::task_state<value_type>>();
        // Only a body that takes the token can see it (a stop_state is a heap block), and
        // it exists before admit() publishes the record to cancelling threads.
        if constexpr (takes_token)
            state->make_stoppable();
        admit(state, child_kind::thread, std::move(options), where);
        auto* raw = state.get();
        start_blocking(state,
                       [raw, fn = fn_type(std::forward<F>(f))](std::stop_token token) mutable {
                           auto call = [&]() -> decltype(auto) {
                               if constexpr (takes_token)
                                   return std::invoke(fn, std::move(token));
                               else
                                   return std::invoke(fn);
                           };
                           if constexpr (std::is_void_v<value_type>)
                               call();
                           else
                               raw->set_value(call());
                       });
        return task<value_type>(std::move(state));
    } else {
        static_assert(std::is_invocable_v<fn_type&>,
                      "warden::supervisor::spawn: f must be callable as f() or "
                      "f(std::stop_token); f() may return asio::awaitable<T>");
    }
}

} // namespace warden
