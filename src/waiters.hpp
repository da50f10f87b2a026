#pragma once

// How the supervisor's waits learn that it changed. Private to src/.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include <warden/detail/function.hpp>

namespace warden::detail {

// The supervisor's stop source. A request is over only once the stop callbacks have run: a
// waiter that throws the first failure finds every callback done, even when another thread's
// request is still running them (rule 3 in supervisor.cpp).
class supervisor_stop {
  public:
    std::stop_token token() const noexcept { return source_.get_token(); }

    void request() {
        if (!claimed_.exchange(true, std::memory_order_acq_rel)) {
            requester_.store(std::this_thread::get_id(), std::memory_order_relaxed);
            source_.request_stop();
            done_.store(true, std::memory_order_release);
            done_.notify_all();
            return;
        }
        // A stop callback that requests again runs on the requesting thread: it must not wait
        // for itself.
        if (requester_.load(std::memory_order_relaxed) == std::this_thread::get_id())
            return;
        done_.wait(false, std::memory_order_acquire);
    }

  private:
    std::stop_source source_;
    std::atomic<bool> claimed_{false};
    std::atomic<std::thread::id> requester_{};
    std::atomic<bool> done_{false};
};

// Two kinds of change. Any change (a child ended, notify()) may make wait_until's predicate
// true. A settling change (every child done, a failure, a cancel) is the only kind join and
// wait care about: waking them for each of 100k finishing children costs more than the
// children do. Blocking waits sleep on one condition variable per kind; join registers a
// one-shot callback for the next settling change. The counters and callbacks are guarded by
// the supervisor's mutex.
class waiters {
  public:
    enum class kind { any, settling };

    std::uint64_t changes(kind k) const noexcept {
        return k == kind::any ? changes_ : settlements_;
    }

    // Ends the caller's critical section, then wakes: waking after the unlock, since a woken
    // waiter's first step is to take the lock. If `stop_first` is given, stop is requested on
    // it before anyone wakes (a waiter that throws the first failure finds
    // stop_token().stop_requested() true); unlocked, since request_stop() runs the stop
    // callbacks of every token, users' included.
    void notify_and_unlock(std::unique_lock<std::mutex>& lock, bool settling,
                           supervisor_stop* stop_first) {
        ++changes_;
        std::vector<unique_function<void()>> callbacks;
        if (settling) {
            ++settlements_;
            callbacks.swap(on_next_settlement_);
        }
        lock.unlock();
        if (stop_first != nullptr)
            stop_first->request();
        any_.notify_all();
        if (settling)
            settled_.notify_all();
        for (auto& callback : callbacks)
            callback();
    }

    // Wakes the waits on any change without counting one: a condition they check changed
    // (a log line was written).
    void wake_any() { any_.notify_all(); }

    // A join is suspended, to be resumed by the next settling change. Caller holds the lock.
    bool join_waits() const noexcept { return !on_next_settlement_.empty(); }
    // Runs `fn` once, at the next settling change. Caller holds the supervisor's lock.
    void on_next_settlement(unique_function<void()> fn) {
        on_next_settlement_.push_back(std::move(fn));
    }

    // Sleeps until the next change of kind `k`, or `until`.
    void wait_for_change(std::unique_lock<std::mutex>& lock, kind k,
                         std::chrono::steady_clock::time_point until) {
        const auto seen = changes(k);
        cv(k).wait_until(lock, until, [&] { return changes(k) != seen; });
    }

    // Sleeps until `done()`, checked at each change of kind `k`, or `until`.
    template <class Pred>
    void wait_until(std::unique_lock<std::mutex>& lock, kind k,
                    std::chrono::steady_clock::time_point until, Pred done) {
        cv(k).wait_until(lock, until, done);
    }
    template <class Pred>
    void wait(std::unique_lock<std::mutex>& lock, kind k, Pred done) {
        cv(k).wait(lock, done);
    }

  private:
    std::condition_variable& cv(kind k) noexcept { return k == kind::any ? any_ : settled_; }

    std::condition_variable any_;
    std::condition_variable settled_;
    std::uint64_t changes_ = 0;
    std::uint64_t settlements_ = 0;
    std::vector<unique_function<void()>> on_next_settlement_;
};

} // namespace warden::detail
