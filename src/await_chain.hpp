#pragma once

// A coroutine child's await chain: the coroutines it is suspended in, innermost first, read
// from Asio's own frames by the dump (docs/hang-reports.md, "Coroutine children").
//
// Asio keeps one stack of frames per co_spawn: the entry frame holds the top of the stack,
// and each frame links to its caller. warden runs each coroutine child's body inside a frame
// of its own (traced_body) that publishes itself to the child's record while the body runs;
// the dump walks from the entry frame's top down to that frame.
//
// Frames are pushed and popped only while the coroutine runs, and a coroutine child runs
// only inside a handler of its child_executor. Every such handler passes through a gate
// (handler_gate): the dump walks only after it has closed the gate with no handler inside,
// so it never reads a frame that is being changed or freed. It waits for a running handler
// until its deadline, and then reports the thread that runs it instead.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <warden/detail/child.hpp>
#include <warden/detail/function.hpp>

namespace warden::detail {

inline constexpr std::uint32_t gate_closed_for_walk = std::uint32_t{1} << 31;

// Held by each handler of a coroutine child while it runs (handlers of one child may run
// at once on a multi-threaded executor, and nest on one thread: the gate counts them).
class handler_gate {
  public:
    explicit handler_gate(child_record& child) noexcept
        : gate_(child.handlers_running_) {
        std::uint32_t seen = gate_.load(std::memory_order_relaxed);
        for (;;) {
            if (seen == gate_closed_for_walk) {
                // A walk reads a few pointers: this waits microseconds, never for a dump's
                // symbolising or formatting.
                gate_.wait(seen, std::memory_order_relaxed);
                seen = gate_.load(std::memory_order_relaxed);
                continue;
            }
            if (gate_.compare_exchange_weak(seen, seen + 1, std::memory_order_acquire,
                                            std::memory_order_relaxed))
                break;
        }
    }
    ~handler_gate() { gate_.fetch_sub(1, std::memory_order_release); }
    handler_gate(const handler_gate&) = delete;
    handler_gate& operator=(const handler_gate&) = delete;

  private:
    std::atomic<std::uint32_t>& gate_;
};

// A coroutine child's body, run inside a frame that publishes the child's await chain for
// as long as the body runs.
boost::asio::awaitable<void> traced_body(child_record& child, boost::asio::awaitable<void> body);
boost::asio::awaitable<void> traced_body(child_record& child,
                                         unique_function<boost::asio::awaitable<void>()> make_body);

struct await_chain {
    enum class state {
        suspended,  // frames holds where it waits
        outside,    // not inside its body: starting, or completing
        running,    // a handler of the child ran past the deadline, on thread `thread`
        unsupported // this Asio version's frames are not known to warden
    };
    state at = state::outside;
    // Each frame's resume function, innermost coroutine first (to symbolise).
    std::vector<const void*> frames;
    int thread = 0;
};

// Reads the chain of a coroutine child, waiting for a running handler until `deadline`.
await_chain read_await_chain(child_record& child, std::chrono::steady_clock::time_point deadline);

} // namespace warden::detail
