#pragma once

// How a child that ends on another thread wakes a join waiting on an io_context. Private to
// src/.

#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <warden/detail/function.hpp>

namespace warden::detail {

// An eventfd the join's executor waits on. A post from another thread wakes an io_context
// whose thread sleeps in epoll_wait while holding the scheduler's mutex (Boost 1.81,
// scheduler::wake_one_thread_and_unlock): the woken thread often preempts the poster, then
// sleeps again on that mutex until the poster lets it go. A write to the eventfd holds no lock,
// so the thread wakes once (plain Asio: p50 7.0-7.7 -> 4.0-4.8 us, bench/README.md).
class join_bell {
  public:
    // The descriptor; shared with the threads that may ring it, so that a ring racing the
    // join's end writes to this descriptor and no other that took its number.
    struct descriptor;

    // Null if the executor is not an io_context's (or a strand of one), or no eventfd can be
    // made (EMFILE): the join is then woken by a post, as before.
    static std::unique_ptr<join_bell> make(const boost::asio::any_io_executor& executor) noexcept;
    join_bell(const boost::asio::any_io_executor& executor, std::shared_ptr<descriptor> fd);
    ~join_bell();
    join_bell(const join_bell&) = delete;
    join_bell& operator=(const join_bell&) = delete;

    // On the executor: `on_ring` runs there at the next ring after this call (armed before the
    // join registers its waker, so that no ring comes between and is missed).
    void arm(unique_function<void()> on_ring);
    // On the executor: a wait armed and not rung ends without running its function.
    void disarm() noexcept;

    std::weak_ptr<descriptor> ringer() const noexcept { return fd_; }
    // From any thread. False if the join has ended (its waker then posts, as before).
    static bool ring(const std::weak_ptr<descriptor>& ringer) noexcept;

  private:
    std::shared_ptr<descriptor> fd_;
    boost::asio::posix::stream_descriptor waiting_;
};

} // namespace warden::detail
