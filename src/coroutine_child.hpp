#pragma once

// Coroutine children: how they are started (co_spawn_child), and their await chain (the
// coroutines a child is suspended in, innermost first), read from Asio's own frames by the
// dump (docs/hang-reports.md, "Coroutine children").
//
// co_spawn runs each coroutine in a stack of frames whose bottom, the entry frame, holds the
// top of the stack; each frame links to its caller. warden's starter object lives in the
// entry frame (co_spawn keeps the callable it is given there) and publishes its own address
// to the child's record when co_spawn calls it; its destructor, run when the entry frame is
// destroyed, withdraws it. The entry frame is found from the starter's address by an offset
// measured once per process, by a probe coroutine that asks Asio for its own frame. So a
// child pays for no coroutine frame of warden's own.
//
// Frames are pushed and popped only while the coroutine runs, and a coroutine child runs
// only inside a handler of its child_executor. Every such handler passes through a gate
// (handler_gate): the dump walks only after it has closed the gate with no handler inside,
// so it never reads a frame that is being changed or freed. It waits for a running handler
// until its deadline, and then reports the thread that runs it instead.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <warden/detail/child.hpp>
#include <warden/detail/function.hpp>
#include <warden/detail/spawn.hpp>

#include "child_access.hpp"

namespace warden::detail {

inline constexpr std::uint32_t gate_closed_for_walk = std::uint32_t{1} << 31;

// Held by each handler of a coroutine child while it runs (handlers of one child may run
// at once on a multi-threaded executor, and nest on one thread: the gate counts them). One
// atomic add to enter and one to leave; a handler that finds a walk in progress steps back
// out and waits for it.
class handler_gate {
  public:
    explicit handler_gate(child_record& child) noexcept
        : gate_(child_access::handlers_running(child)) {
        while ((gate_.fetch_add(1, std::memory_order_acquire) & gate_closed_for_walk) != 0) {
            // A walk reads a few pointers: this waits microseconds, never for a dump's
            // symbolising or formatting.
            const std::uint32_t seen = gate_.fetch_sub(1, std::memory_order_relaxed) - 1;
            if ((seen & gate_closed_for_walk) != 0)
                gate_.wait(seen, std::memory_order_relaxed);
        }
    }
    ~handler_gate() { gate_.fetch_sub(1, std::memory_order_release); }
    handler_gate(const handler_gate&) = delete;
    handler_gate& operator=(const handler_gate&) = delete;

  private:
    std::atomic<std::uint32_t>& gate_;
};

// Starts a coroutine child on its supervisor's executor, through its child_executor. The
// body is an awaitable<void>, or a callable that makes one (kept for the coroutine's life).
template <class Body>
void co_spawn_child(const std::shared_ptr<child_record>& child, Body body);

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
