#include "fork_safe.hpp"

#include <array>
#include <atomic>
#include <cstddef>

#include <pthread.h>

namespace warden::detail {

namespace {

// Filled at most once per slot, never emptied: a slot is read only up to `registered`, which
// is published after the slot is written.
std::array<std::mutex*, 16> held;
std::atomic<std::size_t> registered{0};
std::atomic<std::size_t> next_slot{0};

// How many take_all() took: a lock registered during a fork is not released by it. Written
// only while every lock taken is held, so a second fork waits in take_all() meanwhile.
std::size_t taken = 0;

void take_all() noexcept {
    const std::size_t n = registered.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i)
        held[i]->lock();
    taken = n;
}

void release_all() noexcept {
    for (std::size_t i = taken; i-- > 0;)
        held[i]->unlock();
}

} // namespace

void hold_across_fork(std::mutex& lock) noexcept {
    static const bool handlers = ::pthread_atfork(&take_all, &release_all, &release_all) == 0;
    if (!handlers)
        return;
    const std::size_t slot = next_slot.fetch_add(1);
    if (slot >= held.size())
        return;
    held[slot] = &lock;
    // Slots are published in order, so a fork never takes a slot not yet written.
    std::size_t expected = slot;
    while (!registered.compare_exchange_weak(expected, slot + 1, std::memory_order_release)) {
        expected = slot;
    }
}

} // namespace warden::detail
