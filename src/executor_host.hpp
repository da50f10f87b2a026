#pragma once

// Where a supervisor's children run: its executor, and the threads of its blocking children.
// Private to src/.

#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <warden/detail/function.hpp>

namespace warden::detail {

// The threads that run blocking children: an io_context run by `size` threads. Not
// asio::thread_pool: when one of its threads cannot be created its constructor throws with the
// others left running, and destroying it then waits for them forever.
class blocking_pool {
  public:
    // More would be a mistake, not a plan (the kernel's own limits are near 32k threads).
    static constexpr std::size_t max_threads = 16384;

    // Throws spawn_error, with no thread left, if `size` is too large or a thread cannot start.
    blocking_pool(std::size_t size, const std::string& supervisor);
    ~blocking_pool();
    blocking_pool(const blocking_pool&) = delete;
    blocking_pool& operator=(const blocking_pool&) = delete;

    boost::asio::io_context::executor_type executor() noexcept { return io_.get_executor(); }
    // Runs what is queued, then joins the threads.
    void join();

  private:
    boost::asio::io_context io_;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
    std::vector<std::thread> threads_;
};

// The executor a supervisor's coroutine children and process waits run on: the caller's, or an
// io_context with a thread of its own (the default constructor's); and the pool of its blocking
// children, created by the first blocking spawn. Both live until stop(), which the supervisor
// calls once every child has ended.
class executor_host {
  public:
    // An io_context of its own, run by a thread of its own.
    executor_host();
    explicit executor_host(boost::asio::any_io_executor executor);
    ~executor_host();
    executor_host(const executor_host&) = delete;
    executor_host& operator=(const executor_host&) = delete;

    const boost::asio::any_io_executor& executor() const noexcept { return executor_; }
    // The thread of its own io_context calls this; false when the executor is the caller's.
    bool on_own_io_thread() const;
    // Created on first use with `threads` threads (0: one per core); throws spawn_error if it
    // cannot be, and tries again on the next call.
    blocking_pool& pool(std::size_t threads, const std::string& supervisor);

    // True where a coroutine spawn from the calling thread goes through start_in_batch(): the
    // io_context is this host's own and the caller is not its thread.
    bool starts_in_batches() const { return own_io_ && !on_own_io_thread(); }
    // Runs `start` on the own I/O thread, after the starts handed over before it. Spawns from a
    // foreign thread (the caller's, which then blocks in wait()) queue here, and the I/O thread
    // takes all that are queued at once: one post, and at most one wake-up of the I/O thread,
    // per batch instead of per child. co_spawn then allocates the coroutine's frames on the
    // thread that completes and frees them, which keeps them in that thread's malloc cache
    // (bench_spawn_coroutine_*, the default constructor's row).
    void start_in_batch(unique_function<void()> start);

    // Runs what is still queued on its own io_context (timer cancellations of finished joins,
    // line matchers' verdicts), then stops and joins its thread; then joins the pool.
    void stop() noexcept;

  private:
    // mutable: io_context::get_executor() is not const
    mutable std::optional<boost::asio::io_context> own_io_;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
    std::thread io_thread_;
    boost::asio::any_io_executor executor_;
    // Starts handed over by start_in_batch() and not yet taken by the I/O thread; `batch_posted_`
    // while a run_batch() is queued or will be queued again that takes them.
    std::mutex batch_mutex_;
    std::vector<unique_function<void()>> batch_;
    bool batch_posted_ = false;
    // The batch the I/O thread took, and the next of its starts to run; only that thread
    // touches them.
    std::vector<unique_function<void()>> taken_;
    std::size_t next_start_ = 0;
    // How many starts run_batch() runs before it queues itself again. A child started on the
    // I/O thread that ends at once has its completion posted by co_spawn, and its frames live
    // until that runs: were a whole batch of thousands started in one go, their frames would
    // all be live at once, and the thread's heap would grow for them (page faults, mprotect)
    // instead of reusing the last few. 100k trivial children through the default
    // constructor: minor faults 16-21k -> 7-9k, time -20% (bench_spawn_coroutine_stacktrace).
    static constexpr std::size_t starts_per_turn = 64;
    void run_batch();

    std::once_flag pool_created_;
    std::unique_ptr<blocking_pool> pool_; // written once, under pool_created_
};

} // namespace warden::detail
