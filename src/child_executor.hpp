#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include "core.hpp"

namespace warden::detail {

// The executor a coroutine child runs on: the supervisor's executor, plus "this child is
// running" for the duration of every handler. That is how a spawn made from inside a
// coroutine child learns its parent, and how join() from inside a child is refused.
//
// Inner is io_context::executor_type when the supervisor runs on an io_context (its own, or
// the caller's): 8 bytes, which with the shared_ptr fits any_io_executor's small buffer, so
// copies of the child's executor never allocate. Otherwise it is any_io_executor.
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

    template <class Function>
    void execute(Function&& f) const {
        inner_.execute([child = child_, f = std::forward<Function>(f)]() mutable {
            current_child_scope scope(child.get());
            std::move(f)();
        });
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
