#pragma once

#include <exception>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

#include <warden/detail/asio_task_result.hpp>
#include <warden/detail/child.hpp>

namespace warden {

class supervisor;

namespace detail {
template <class T>
struct task_signature {
    using type = void(std::exception_ptr, task_value<T>);
};
template <>
struct task_signature<void> {
    using type = void(std::exception_ptr);
};
} // namespace detail

// A handle to one child, cheap to copy.
//
// A task is an Asio asynchronous operation, so `co_await t` works in an asio::awaitable
// coroutine and yields the child's value or rethrows its own exception object. With other
// completion tokens (`t(asio::use_future)`, `t(handler)`) it completes with
// (std::exception_ptr, detail::task_value<T>). `t.get()` is the blocking form.
template <class T = void>
class task {
  public:
    // An empty task (default-constructed or moved-from) refers to no child: valid() is false
    // and every other member throws std::logic_error, as std::future does.
    task() = default;

    bool valid() const noexcept { return state_ != nullptr; }
    const std::string& name() const { return state().name(); }
    bool done() const { return state().done(); }
    void cancel() const { state().cancel(); }

    T get() const {
        auto& s = state();
        s.wait_done();
        if (auto e = s.error())
            std::rethrow_exception(e);
        if constexpr (!std::is_void_v<T>)
            return s.take_value();
    }

    template <
        boost::asio::completion_token_for<typename detail::task_signature<T>::type> CompletionToken>
    auto operator()(CompletionToken&& token) const {
        state(); // an empty task throws here, before anything is initiated
        return boost::asio::async_initiate<CompletionToken, signature>(
            [](auto handler, std::shared_ptr<detail::task_state<T>> state) {
                // Keep the awaiter's executor alive while the child runs elsewhere.
                auto work = boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                                boost::asio::execution::outstanding_work.tracked);
                auto* raw = state.get();
                raw->on_done([handler = std::move(handler), state = std::move(state),
                              work = std::move(work)]() mutable {
                    boost::asio::post(complete(std::move(handler), *state));
                });
            },
            token, state_);
    }

  private:
    friend class supervisor;
    friend class process; // process::as_task()
    using signature = typename detail::task_signature<T>::type;

    explicit task(std::shared_ptr<detail::task_state<T>> state)
        : state_(std::move(state)) {}

    detail::task_state<T>& state() const {
        if (!state_)
            detail::throw_empty_task();
        return *state_;
    }

    template <class Handler>
    static auto complete(Handler&& handler, detail::task_state<T>& state) {
        auto error = state.error();
        if constexpr (std::is_void_v<T>) {
            return boost::asio::append(std::forward<Handler>(handler), error);
        } else {
            detail::task_value<T> value;
            if (!error)
                value.value.emplace(state.take_value());
            return boost::asio::append(std::forward<Handler>(handler), error, std::move(value));
        }
    }

    std::shared_ptr<detail::task_state<T>> state_;
};

} // namespace warden
