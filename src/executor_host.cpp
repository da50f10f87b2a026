#include "executor_host.hpp"

#include <algorithm>
#include <new>
#include <optional>
#include <system_error>

#include <boost/asio/post.hpp>

#include <fmt/format.h>

#include <warden/errors.hpp>

#include "blocking_job.hpp"

namespace asio = boost::asio;

namespace warden::detail {

blocking_pool::blocking_pool(std::size_t size, const std::string& supervisor)
    : io_(size == 1 ? 1 : 0) {
    if (size > max_threads)
        throw spawn_error(std::make_error_code(std::errc::invalid_argument),
                          "supervisor_options::threads",
                          fmt::format("supervisor {}: a pool of {} threads for blocking children "
                                      "is more than the {} allowed",
                                      supervisor, size, max_threads));
    work_.emplace(io_.get_executor());
    threads_.reserve(size);
    try {
        for (std::size_t i = 0; i < size; ++i)
            threads_.emplace_back([this] {
                // libunwind keeps a cache of frame layouts per thread, and fills it as it
                // meets frames: a fresh thread's first capture costs most of a millisecond,
                // and later ones some microseconds per frame it has not met. A child's throw is
                // captured on the way from its failure to its parent (bench_failure_latency,
                // defaults rows), so the thread first runs a job that throws through the same
                // frames: the same job type, run by the same call below (one call site for both
                // io_contexts, so the return addresses are the child's too).
                std::optional<asio::io_context> warm_up;
                try {
                    warm_up.emplace(1);
                    asio::post(warm_up->get_executor(), blocking_job::warm_up());
                } catch (...) {
                    warm_up.reset(); // out of memory: the thread goes without its warm-up
                }
                for (asio::io_context* io : {warm_up ? &*warm_up : nullptr, &io_})
                    if (io != nullptr)
                        io->run();
            });
    } catch (const std::system_error& e) {
        // RLIMIT_NPROC, the kernel's thread limit, or memory: the threads that did start go,
        // and the spawn that needed the pool fails with nothing left behind.
        const std::size_t started = threads_.size();
        io_.stop();
        join();
        throw spawn_error(e.code(), "supervisor_options::threads",
                          fmt::format("supervisor {}: cannot start thread {} of its pool of {} "
                                      "for blocking children",
                                      supervisor, started + 1, size));
    }
}

blocking_pool::~blocking_pool() {
    join();
}

void blocking_pool::join() {
    // Jobs already queued run first: each ends a child that the supervisor is waiting for.
    work_.reset();
    for (auto& thread : threads_)
        if (thread.joinable())
            thread.join();
}

executor_host::executor_host() {
    own_io_.emplace(1);
    work_.emplace(own_io_->get_executor());
    executor_ = own_io_->get_executor();
    io_thread_ = std::thread([this] { own_io_->run(); });
}

executor_host::executor_host(asio::any_io_executor executor)
    : executor_(std::move(executor)) {}

executor_host::~executor_host() {
    stop();
}

bool executor_host::on_own_io_thread() const {
    return own_io_ && own_io_->get_executor().running_in_this_thread();
}

void executor_host::start_in_batch(unique_function<void()> start) {
    {
        std::lock_guard lock(batch_mutex_);
        batch_.push_back(std::move(start));
        if (batch_posted_)
            return;
        batch_posted_ = true;
    }
    asio::post(*own_io_, [this] { run_batch(); });
}

void executor_host::run_batch() {
    for (;;) {
        if (next_start_ == taken_.size()) {
            // The emptied vector keeps its capacity for the batch after the next.
            taken_.clear();
            next_start_ = 0;
            std::lock_guard lock(batch_mutex_);
            taken_.swap(batch_);
            if (taken_.empty()) {
                batch_posted_ = false;
                return;
            }
        }
        const std::size_t end = std::min(taken_.size(), next_start_ + starts_per_turn);
        while (next_start_ < end)
            taken_[next_start_++]();
        try {
            asio::post(*own_io_, [this] { run_batch(); });
            return;
        } catch (const std::bad_alloc&) {
            // No memory to queue the next turn: it runs in this one, so that no start is left
            // behind.
        }
    }
}

blocking_pool& executor_host::pool(std::size_t threads, const std::string& supervisor) {
    // Not under the supervisor's mutex: every blocking spawn asks for the pool, and that lock
    // is contended by the pool threads ending children. call_once tries again after a throw.
    std::call_once(pool_created_, [&] {
        const std::size_t n =
            threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
        pool_ = std::make_unique<blocking_pool>(n, supervisor);
    });
    return *pool_;
}

void executor_host::stop() noexcept {
    if (own_io_) {
        work_.reset();
        // Handlers still queued run first. Two hops: a line matcher's verdict cancels its
        // waiter's timer, which queues the timer's handler behind the first hop; the stop comes
        // after that one too.
        asio::post(*own_io_, [this] { asio::post(*own_io_, [this] { own_io_->stop(); }); });
        io_thread_.join();
        // Destroys what never ran, and the shared_ptrs to the supervisor it held.
        own_io_.reset();
    }
    if (pool_) {
        pool_->join();
        pool_.reset();
    }
}

} // namespace warden::detail
