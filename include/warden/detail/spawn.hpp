#pragma once

// What supervisor::spawn makes of the callable it is given: which kind of child, what value,
// and the coroutines that carry a child's value into its task.

#include <exception>
#include <functional>
#include <memory>
#include <stop_token>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <warden/detail/child.hpp>
#include <warden/detail/function.hpp>

namespace warden::detail {

template <class R>
struct awaitable_traits : std::false_type {};
template <class T>
struct awaitable_traits<boost::asio::awaitable<T, boost::asio::any_io_executor>> : std::true_type {
    using value_type = T;
};

// f() returning asio::awaitable<T>: evaluated only for callables that take no argument.
template <class Fn, bool = std::is_invocable_v<Fn&>>
struct returns_awaitable : std::false_type {};
template <class Fn>
struct returns_awaitable<Fn, true> : awaitable_traits<std::invoke_result_t<Fn&>> {};

template <class Fn, bool = std::is_invocable_v<Fn&, std::stop_token>>
struct blocking_result {
    using type = std::invoke_result_t<Fn&>;
};
template <class Fn>
struct blocking_result<Fn, true> {
    using type = std::invoke_result_t<Fn&, std::stop_token>;
};

inline boost::asio::awaitable<void> rethrow_as_child(std::exception_ptr error) {
    std::rethrow_exception(std::move(error));
    co_return;
}

// A coroutine function with nothing captured (an empty callable, a function pointer): nothing
// the coroutine could refer to, so it is called where the child starts and dropped, and
// co_spawn runs the awaitable it made.
struct coroutine_maker {
    unique_function<boost::asio::awaitable<void>()> make;
};

// f() for a child body: what it throws before its coroutine exists (a plain function that
// returns an awaitable) is the child's failure, as when co_spawn calls it.
template <class Fn>
boost::asio::awaitable<void> invoke_coroutine(Fn& f) {
    try {
        return std::invoke(f);
    } catch (...) {
        return rethrow_as_child(std::current_exception());
    }
}

// A child with a value stores it in its task before it completes. (A void child needs no
// such frame: co_spawn runs its awaitable, or keeps its callable alive, by itself.)
template <class T, class Fn>
boost::asio::awaitable<void> run_coroutine_child(std::shared_ptr<task_state<T>> state, Fn fn) {
    // fn is a parameter of this frame, so a lambda's captures outlive the coroutine it makes.
    state->set_value(co_await std::invoke(fn));
}

template <class T>
boost::asio::awaitable<void> run_awaitable_child(std::shared_ptr<task_state<T>> state,
                                                 boost::asio::awaitable<T> body) {
    state->set_value(co_await std::move(body));
}

} // namespace warden::detail
