#pragma once

// What the code that runs a child's body may change of its record, and the dump read. Private
// to src/: a child_record shows templates only its identity and its end.

#include <atomic>
#include <cstdint>
#include <memory>
#include <stop_token>

#include <boost/asio/cancellation_signal.hpp>

#include <warden/detail/child.hpp>

namespace warden::detail {

struct child_access {
    // A thread child: the kernel id of the pool thread running its body, 0 while queued and
    // after it ends. A coroutine child: the thread that last entered one of its handlers.
    static std::atomic<int>& running_on(child_record& c) noexcept { return c.running_on_; }
    // A thread child's stop token: a body that takes one is given it.
    static std::stop_token stop_token(const child_record& c) noexcept {
        return c.stop_.get_token();
    }
    // A coroutine child's gate and anchor (coroutine_child.hpp keeps their rules).
    static std::atomic<std::uint32_t>& handlers_running(child_record& c) noexcept {
        return c.handlers_running_;
    }
    static std::atomic<void*>& await_anchor(child_record& c) noexcept { return c.await_anchor_; }
    // Set at admission under capture::stacktrace; the pool's warm-up child (blocking_job)
    // sets its own, so that its throw is recorded as a child's is.
    static std::shared_ptr<const stack_capture>& spawn_stack(child_record& c) noexcept {
        return c.spawn_stack_;
    }
    // A coroutine child's cancellation slot is bound to this signal.
    static boost::asio::cancellation_signal& cancel_signal(child_record& c) noexcept {
        return c.cancel_signal_;
    }
};

} // namespace warden::detail
