#pragma once

#include <memory>
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
class child_executor {
  public:
    child_executor(boost::asio::any_io_executor inner, std::shared_ptr<child_record> child) noexcept
        : inner_(std::move(inner))
        , child_(std::move(child)) {}

    template <class Property>
    auto query(const Property& p) const
        -> decltype(boost::asio::query(std::declval<const boost::asio::any_io_executor&>(), p)) {
        return boost::asio::query(inner_, p);
    }

    template <class Property>
    requires boost::asio::can_require<const boost::asio::any_io_executor&, Property>::value
        child_executor
        require(const Property& p)
    const { return child_executor(boost::asio::require(inner_, p), child_); }

    template <class Property>
    requires boost::asio::can_prefer<const boost::asio::any_io_executor&, Property>::value
        child_executor
        prefer(const Property& p)
    const { return child_executor(boost::asio::prefer(inner_, p), child_); }

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
    boost::asio::any_io_executor inner_;
    std::shared_ptr<child_record> child_;
};

} // namespace warden::detail
