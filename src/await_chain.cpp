#include "await_chain.hpp"

#include <thread>

#include <boost/asio/this_coro.hpp>
#include <boost/asio/version.hpp>

namespace warden::detail {

namespace asio = boost::asio;

// The frames are Asio's private classes. Their layout is known for the versions below;
// with any other the chain is reported as unsupported rather than read wrongly.
#if BOOST_ASIO_VERSION == 102600 // Boost 1.81
#define WARDEN_KNOWS_ASIO_FRAMES 1
#else
#define WARDEN_KNOWS_ASIO_FRAMES 0
#endif

namespace {

using frame_base = asio::detail::awaitable_frame_base<asio::any_io_executor>;
using thread_type = asio::detail::awaitable_thread<asio::any_io_executor>;

#if WARDEN_KNOWS_ASIO_FRAMES
using entry_frame = asio::detail::awaitable_frame<asio::detail::awaitable_thread_entry_point,
                                                  asio::any_io_executor>;

// Access to the frames' private links. An explicit instantiation may name private members
// ([temp.spec.general]); each instantiation defines a friend function returning the
// member pointer it was given, found through its tag by argument-dependent lookup.
template <class Tag, typename Tag::type Member>
struct member_access {
    friend typename Tag::type member_of(Tag) { return Member; }
};

struct caller_tag {
    using type = frame_base* frame_base::*;
    friend type member_of(caller_tag);
};
struct coroutine_tag {
    using type = asio::detail::coroutine_handle<void> frame_base::*;
    friend type member_of(coroutine_tag);
};
struct top_tag {
    using type = frame_base* entry_frame::*;
    friend type member_of(top_tag);
};

template struct member_access<caller_tag, &frame_base::caller_>;
template struct member_access<coroutine_tag, &frame_base::coro_>;
template struct member_access<top_tag, &entry_frame::top_of_stack_>;

// GCC and Clang both start a coroutine frame with its resume function: its symbol names the
// coroutine ("outer() [clone .actor]" with GCC).
const void* resume_function(asio::detail::coroutine_handle<void> handle) {
    return handle ? *static_cast<const void* const*>(handle.address()) : nullptr;
}
#endif

// Clears the child's published frame when the body ends, by return, exception or destroy.
struct published_frame {
    child_record& child;
    ~published_frame() { child.await_anchor_.store(nullptr, std::memory_order_release); }
};

// Asio calls this with the awaiting frame once it is suspended, and then resumes it: a
// frame learns its own address without a handler of its own.
auto publish_frame(child_record& child) {
    return [&child](frame_base* self) -> thread_type* {
        child.await_anchor_.store(self, std::memory_order_release);
        return nullptr;
    };
}

} // namespace

asio::awaitable<void> traced_body(child_record& child, asio::awaitable<void> body) {
    co_await publish_frame(child);
    published_frame published{child};
    co_await std::move(body);
}

asio::awaitable<void> traced_body(child_record& child,
                                  unique_function<asio::awaitable<void>()> make_body) {
    // make_body is a parameter of this frame: a lambda's captures outlive the coroutine it
    // makes.
    co_await publish_frame(child);
    published_frame published{child};
    co_await make_body();
}

await_chain read_await_chain(child_record& child, std::chrono::steady_clock::time_point deadline) {
    await_chain chain;
#if !WARDEN_KNOWS_ASIO_FRAMES
    (void)child;
    (void)deadline;
    chain.at = await_chain::state::unsupported;
#else
    auto& gate = child.handlers_running_;
    for (;;) {
        std::uint32_t idle = 0;
        if (gate.compare_exchange_strong(idle, gate_closed_for_walk, std::memory_order_acquire,
                                         std::memory_order_relaxed))
            break;
        if (std::chrono::steady_clock::now() >= deadline) {
            chain.at = await_chain::state::running;
            chain.thread = child.running_on_.load(std::memory_order_relaxed);
            return chain;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // The gate is closed: no handler of the child runs, so no frame is pushed, popped or
    // freed until it opens. Nothing in here allocates beyond the vector, or can throw past it.
    try {
        auto* own = static_cast<frame_base*>(child.await_anchor_.load(std::memory_order_acquire));
        if (own != nullptr) {
            chain.at = await_chain::state::suspended;
            auto* entry = static_cast<entry_frame*>(own->*member_of(caller_tag{}));
            constexpr std::size_t max_frames = 64;
            chain.frames.reserve(8);
            for (frame_base* f = entry->*member_of(top_tag{});
                 f != nullptr && f != own && chain.frames.size() < max_frames;
                 f = f->*member_of(caller_tag{}))
                chain.frames.push_back(resume_function(f->*member_of(coroutine_tag{})));
        }
    } catch (...) {
        chain.frames.clear();
    }
    gate.store(0, std::memory_order_release);
    gate.notify_all();
#endif
    return chain;
}

} // namespace warden::detail
