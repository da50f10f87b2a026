#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution/blocking.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include "core.hpp"
#include "coroutine_child.hpp"

namespace warden::detail {

// The executor a coroutine child runs on: the supervisor's executor, plus "this child is
// running" for the duration of every handler. That is how a spawn made from inside a
// coroutine child learns its parent, how join() from inside a child is refused, and how the
// dump knows when it may read the child's await chain (handler_gate).
//
// Inner is io_context::executor_type when the supervisor runs on an io_context (its own, or
// the caller's): 8 bytes, which with the shared_ptr fits any_io_executor's small buffer, so
// copies of the child's executor never allocate. Otherwise it is any_io_executor.
// Counts the child handlers running nested on this thread.
class inline_depth_guard {
  public:
    inline_depth_guard() noexcept { ++depth_; }
    ~inline_depth_guard() { --depth_; }
    inline_depth_guard(const inline_depth_guard&) = delete;
    inline_depth_guard& operator=(const inline_depth_guard&) = delete;
    static int depth() noexcept { return depth_; }

  private:
    static inline thread_local int depth_ = 0;
};

// Deep enough that only a chain of spawns reaches it; shallow enough that the stack it takes
// (about 2 KB a level) is a small part of any thread's.
inline constexpr int max_inline_depth = 64;

template <class Inner>
class child_executor {
  public:
    child_executor(Inner inner, std::shared_ptr<child_record> child) noexcept
        : inner_(std::move(inner))
        , child_(std::move(child)) {}

    template <class Property>
    auto query(const Property& p) const
        -> decltype(boost::asio::query(std::declval<const Inner&>(), p)) {
        return boost::asio::query(inner_, p);
    }

    // The inner executor may change type with its properties: wrap whatever it becomes.
    template <class Property>
    requires boost::asio::can_require<const Inner&, Property>::value auto
    require(const Property& p) const {
        using result = std::decay_t<decltype(boost::asio::require(inner_, p))>;
        return child_executor<result>(boost::asio::require(inner_, p), child_);
    }

    template <class Property>
    requires boost::asio::can_prefer<const Inner&, Property>::value auto
    prefer(const Property& p) const {
        using result = std::decay_t<decltype(boost::asio::prefer(inner_, p))>;
        return child_executor<result>(boost::asio::prefer(inner_, p), child_);
    }

    const Inner& inner() const noexcept { return inner_; }

    // Asio runs a handler inline when it is dispatched on the thread that runs the executor,
    // so a coroutine child that spawns the next one starts it on its own stack, and a chain of
    // nested spawns grows the stack with each level until it overflows (at ~4,500 levels). Past
    // max_inline_depth nested handlers the next one is posted instead, and the chain continues
    // from a fresh stack (test: "ten thousand nested coroutine spawns do not overflow the stack").
    template <class Function>
    void execute(Function&& f) const {
        auto run = [child = child_, f = std::forward<Function>(f)]() mutable {
            current_child_scope scope(child.get());
            inline_depth_guard depth;
            handler_gate gate(*child);
            // Written only when it changes: most handlers of a child run on one thread.
            if (const int tid = this_thread_id();
                child_access::running_on(*child).load(std::memory_order_relaxed) != tid)
                child_access::running_on(*child).store(tid, std::memory_order_relaxed);
            std::move(f)();
        };
        if (inline_depth_guard::depth() < max_inline_depth)
            inner_.execute(std::move(run));
        else
            boost::asio::require(inner_, boost::asio::execution::blocking.never)
                .execute(std::move(run));
    }

    friend bool operator==(const child_executor& a, const child_executor& b) noexcept {
        return a.child_ == b.child_ && a.inner_ == b.inner_;
    }
    friend bool operator!=(const child_executor& a, const child_executor& b) noexcept {
        return !(a == b);
    }

  private:
    template <class>
    friend class child_executor;

    Inner inner_;
    std::shared_ptr<child_record> child_;
};

} // namespace warden::detail
