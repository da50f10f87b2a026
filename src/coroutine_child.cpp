#include "coroutine_child.hpp"

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/version.hpp>

#include "child_executor.hpp"
#include "core.hpp"

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
using entry_frame = asio::detail::awaitable_frame<asio::detail::awaitable_thread_entry_point,
                                                  asio::any_io_executor>;

// What co_spawn calls to make the child's coroutine, kept by co_spawn in the entry frame
// for the coroutine's whole life: an awaitable, or a callable whose captures the coroutine
// may refer to. Holds the record: the frame's other holders may be destroyed first.
template <class Body>
class child_starter {
  public:
    // The published address carries the starter's type in its low bit (starters are
    // pointer-aligned): each type has its own entry frame layout.
    static constexpr std::uintptr_t type_bit = std::is_same_v<Body, asio::awaitable<void>> ? 0 : 1;

    child_starter(std::shared_ptr<child_record> child, Body body) noexcept
        : child_(std::move(child))
        , body_(std::move(body)) {}
    child_starter(child_starter&&) noexcept = default;
    child_starter& operator=(child_starter&&) = delete;
    ~child_starter() {
        if (!child_)
            return;
        void* self = published();
        child_access::await_anchor(*child_).compare_exchange_strong(
            self, nullptr, std::memory_order_release, std::memory_order_relaxed);
    }

    // Called once, by co_spawn's entry coroutine, on the copy in its frame.
    asio::awaitable<void> operator()() {
        child_access::await_anchor(*child_).store(published(), std::memory_order_release);
        if constexpr (type_bit == 0)
            return std::move(body_);
        else
            return body_();
    }

  private:
    void* published() noexcept {
        return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(this) | type_bit);
    }

    std::shared_ptr<child_record> child_;
    Body body_;
};

// co_spawn's completion handler for a coroutine child. The record is alive: the supervisor's
// table holds it until child_finished() takes it out.
struct child_completion {
    child_record* child;
    void operator()(std::exception_ptr error) const {
        // co_spawn left its cancellation handler in the slot, holding the child's executor,
        // which holds the record that holds the slot: a cycle to break here.
        child_access::cancel_signal(*child).slot().clear();
        if (child->owner()) // the probe below has no supervisor
            child->owner()->child_finished(*child, body_outcome::threw(std::move(error)));
    }
};

// Every coroutine child is started through this call, so that its entry frame is one of two
// instantiations, each with one layout.
template <class Executor, class Body>
void co_spawn_through(const Executor& executor, const std::shared_ptr<child_record>& child,
                      Body body) {
    asio::co_spawn(executor, child_starter<Body>(child, std::move(body)),
                   asio::bind_cancellation_slot(child_access::cancel_signal(*child).slot(),
                                                child_completion{child.get()}));
}

#if WARDEN_KNOWS_ASIO_FRAMES
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
// coroutine ("outer(outer(int)::_Z5outeri.Frame*)" with GCC).
const void* resume_function(asio::detail::coroutine_handle<void> handle) {
    return handle ? *static_cast<const void* const*>(handle.address()) : nullptr;
}

constexpr std::ptrdiff_t offset_unknown = -1;

// Asks Asio for its own frame (an await_transform that hands a function the awaiting frame,
// and then resumes it), whose caller is the entry frame; the starter has published itself.
asio::awaitable<void> measure_from_inside(child_record* probe, std::ptrdiff_t* offset) {
    frame_base* self = nullptr;
    co_await [&self](frame_base* frame) -> thread_type* {
        self = frame;
        return nullptr;
    };
    const auto entry = reinterpret_cast<std::uintptr_t>(self->*member_of(caller_tag{}));
    const auto starter =
        reinterpret_cast<std::uintptr_t>(child_access::await_anchor(*probe).load()) &
        ~std::uintptr_t{1};
    if (entry != 0 && starter > entry)
        *offset = static_cast<std::ptrdiff_t>(starter - entry);
}

// Where the entry frame's promise is relative to the starter inside the same frame, for one
// starter type: measured once, by starting a probe child the way every child is started.
template <class Body>
std::ptrdiff_t measure_entry_offset() {
    asio::io_context io;
    auto probe = std::make_shared<task_state<void>>();
    std::ptrdiff_t offset = offset_unknown;
    if constexpr (std::is_same_v<Body, asio::awaitable<void>>)
        co_spawn_through(child_executor(io.get_executor(), probe), probe,
                         measure_from_inside(probe.get(), &offset));
    else
        co_spawn_through(child_executor(io.get_executor(), probe), probe, Body([&offset, &probe] {
                             return measure_from_inside(probe.get(), &offset);
                         }));
    io.run();
    return offset;
}

struct entry_offsets {
    std::ptrdiff_t of_awaitable;
    std::ptrdiff_t of_callable;
};

const entry_offsets& measured_entry_offsets() {
    static const entry_offsets offsets{
        measure_entry_offset<asio::awaitable<void>>(),
        measure_entry_offset<unique_function<asio::awaitable<void>()>>()};
    return offsets;
}

// The entry frame of a published starter address.
entry_frame* entry_of(void* published, const entry_offsets& offsets) {
    const auto address = reinterpret_cast<std::uintptr_t>(published);
    const std::ptrdiff_t offset = (address & 1) != 0 ? offsets.of_callable : offsets.of_awaitable;
    // Inside one frame, the promise before the starter; anything else is not a layout
    // warden understands.
    if (offset <= 0 || offset > 4096)
        return nullptr;
    return reinterpret_cast<entry_frame*>((address & ~std::uintptr_t{1}) -
                                          static_cast<std::uintptr_t>(offset));
}
#endif

} // namespace

template <class Body>
void start_coroutine_child(const std::shared_ptr<child_record>& child, Body body) {
    auto executor = child->owner()->executor();
    if (auto* io = executor.target<asio::io_context::executor_type>())
        co_spawn_through(child_executor(*io, child), child, std::move(body));
    else
        co_spawn_through(child_executor(executor, child), child, std::move(body));
    // Armed after co_spawn has connected the slot, so an early cancel is not lost. The
    // signal is emitted where the coroutine runs: a slot is not thread-safe.
    child->owner()->arm_cancel(*child, [child] {
        run_soon(child->owner()->executor(), [child] {
            child_access::cancel_signal(*child).emit(asio::cancellation_type::terminal);
        });
    });
}

// A coroutine_maker is called here, on the thread that starts the child: with the own I/O
// thread, that thread allocates the coroutine's frame and frees it.
template <class Body>
void start_made_or_given(const std::shared_ptr<child_record>& child, Body& body) {
    if constexpr (std::is_same_v<Body, coroutine_maker>)
        start_coroutine_child(child, invoke_coroutine(body.make));
    else
        start_coroutine_child(child, std::move(body));
}

template <class Body>
void co_spawn_child(const std::shared_ptr<child_record>& child, Body body) {
    executor_host& host = child->owner()->host();
    if (!host.starts_in_batches()) {
        start_made_or_given(child, body);
        return;
    }
    // Started on the I/O thread, where co_spawn runs the body at once (its first step is a
    // dispatch). A cancel that comes while the start is queued finds no cancel action yet;
    // arm_cancel() delivers it once co_spawn has connected the slot.
    host.start_in_batch([child, body = std::move(body)]() mutable {
        try {
            start_made_or_given(child, body);
        } catch (...) {
            // No memory for the coroutine's frames: the child fails with that, and is not
            // left in the table for the supervisor's end to wait for. An exception escaping
            // here would end the I/O thread's run.
            if (!child->done())
                child->owner()->child_finished(*child,
                                               body_outcome::threw(std::current_exception()));
        }
    });
}

template void co_spawn_child(const std::shared_ptr<child_record>&, asio::awaitable<void>);
template void co_spawn_child(const std::shared_ptr<child_record>&,
                             unique_function<asio::awaitable<void>()>);
template void co_spawn_child(const std::shared_ptr<child_record>&, coroutine_maker);

await_chain read_await_chain(child_record& child, std::chrono::steady_clock::time_point deadline) {
    await_chain chain;
#if !WARDEN_KNOWS_ASIO_FRAMES
    (void)child;
    (void)deadline;
    chain.at = await_chain::state::unsupported;
#else
    // Measured before the gate is closed: the child's handlers never wait for the probe.
    const entry_offsets& offsets = measured_entry_offsets();
    auto& gate = child_access::handlers_running(child);
    for (;;) {
        std::uint32_t idle = 0;
        if (gate.compare_exchange_strong(idle, gate_closed_for_walk, std::memory_order_acquire,
                                         std::memory_order_relaxed))
            break;
        if (std::chrono::steady_clock::now() >= deadline) {
            chain.at = await_chain::state::running;
            chain.thread = child_access::running_on(child).load(std::memory_order_relaxed);
            return chain;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // The gate is closed: no handler of the child runs, so no frame is pushed, popped or
    // freed until it opens, and the entry frame lives as long as the starter's address is
    // published.
    try {
        if (void* published = child_access::await_anchor(child).load(std::memory_order_acquire);
            published != nullptr) {
            entry_frame* entry = entry_of(published, offsets);
            chain.at =
                entry != nullptr ? await_chain::state::suspended : await_chain::state::unsupported;
            constexpr std::size_t max_frames = 64;
            chain.frames.reserve(8);
            for (frame_base* f = entry != nullptr ? entry->*member_of(top_tag{}) : nullptr;
                 f != nullptr && f != entry && chain.frames.size() < max_frames;
                 f = f->*member_of(caller_tag{}))
                chain.frames.push_back(resume_function(f->*member_of(coroutine_tag{})));
        }
    } catch (...) {
        chain.frames.clear();
    }
    // Handlers that stepped in and out meanwhile have left the count as it was.
    gate.fetch_sub(gate_closed_for_walk, std::memory_order_release);
    gate.notify_all();
#endif
    return chain;
}

} // namespace warden::detail
