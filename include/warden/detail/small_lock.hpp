#pragma once

#include <atomic>

namespace warden::detail {

// A one-byte mutex for a child's own state. There is one per child, and 100k suspended
// children are a use case: std::mutex is 40 bytes. It is held for a few instructions and
// contended only when a cancel races the child's end; a waiter then sleeps in
// atomic::wait, and unlock() makes no system call when nobody waits.
class small_lock {
  public:
    void lock() noexcept {
        while (locked_.exchange(true, std::memory_order_acquire))
            locked_.wait(true, std::memory_order_relaxed);
    }
    void unlock() noexcept {
        locked_.store(false, std::memory_order_release);
        locked_.notify_one();
    }

  private:
    std::atomic<bool> locked_{false};
};

} // namespace warden::detail
