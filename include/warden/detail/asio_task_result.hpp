#pragma once

// Makes `co_await t` work for a warden::task<T> lvalue and yield T, in Boost 1.81.
//
// A task is an Asio asynchronous operation whose completion is (exception_ptr, value).
// Boost 1.81's awaitable has two defects on that path:
// - the resume of awaitable_async_op_handler<R(std::exception_ptr, T)> tests `*result`
//   where it means `*result.ex_`, and does not compile. The completion therefore carries
//   a task_value<T>, and the handler below resumes with the T inside or rethrows.
// - awaitable_async_op keeps the operation as `Op&&` of the decayed type, so only an rvalue
//   operation can be awaited. The operation below keeps a copy of the (cheap) task handle.
// Both are specializations for warden's own types, of Asio's private templates: they are
// written against Boost 1.81's Asio (BOOST_ASIO_VERSION 102600), and any other version is
// refused below rather than miscompiled. Porting to a new Boost: check whether the defects
// above are fixed, and adapt or drop the specializations.

#include <exception>
#include <optional>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/version.hpp>
#include <boost/version.hpp>

#if BOOST_ASIO_VERSION != 102600
#error                                                                                             \
    "warden: <warden/detail/asio_task_result.hpp> specializes Asio's private templates as they are in Boost 1.81 (Asio 1.26.0); this Boost has another Asio. See the comment at the top of that header."
#endif

namespace warden {
template <class T>
class task;
}

namespace warden::detail {

// std::logic_error for a use of a task that refers to no child.
[[noreturn]] void throw_empty_task();

template <class T>
struct task_value {
    std::optional<T> value; // empty when the exception_ptr is set
};

} // namespace warden::detail

namespace boost::asio::detail {

template <typename R, typename T, typename Executor>
class awaitable_async_op_handler<R(std::exception_ptr, warden::detail::task_value<T>), Executor>
    : public awaitable_thread<Executor> {
  public:
    struct result_type {
        std::exception_ptr* error;
        warden::detail::task_value<T>* value;
    };

    awaitable_async_op_handler(awaitable_thread<Executor>* thread, result_type& result)
        : awaitable_thread<Executor>(std::move(*thread))
        , result_(result) {}

    void operator()(std::exception_ptr error, warden::detail::task_value<T> value) {
        // The arguments live in this frame while the coroutine runs on from pump().
        result_.error = &error;
        result_.value = &value;
        this->entry_point()->top_of_stack_->attach_thread(this);
        this->entry_point()->top_of_stack_->clear_cancellation_slot();
        this->pump();
    }

    static T resume(result_type& result) {
        if (*result.error)
            std::rethrow_exception(std::exchange(*result.error, nullptr));
        return std::move(*result.value->value);
    }

  private:
    result_type& result_;
};

template <typename Signature, typename T, typename Executor>
class awaitable_async_op<Signature, warden::task<T>, Executor> {
  public:
    using handler_type = awaitable_async_op_handler<Signature, Executor>;

    awaitable_async_op(const warden::task<T>& task, awaitable_frame_base<Executor>* frame)
        : task_(task)
        , frame_(frame)
        , result_() {}

    // An empty task is not initiated (that would throw out of the executor's run()): it
    // resumes at once and throws in the awaiting coroutine.
    bool await_ready() const noexcept { return !task_.valid(); }

    void await_suspend(coroutine_handle<void>) {
        frame_->after_suspend(
            [](void* arg) {
                auto* self = static_cast<awaitable_async_op*>(arg);
                self->task_(handler_type(self->frame_->detach_thread(), self->result_));
            },
            this);
    }

    auto await_resume() {
        if (!task_.valid())
            warden::detail::throw_empty_task();
        return handler_type::resume(result_);
    }

  private:
    warden::task<T> task_;
    awaitable_frame_base<Executor>* frame_;
    typename handler_type::result_type result_;
};

} // namespace boost::asio::detail
