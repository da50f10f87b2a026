#include "line_matcher.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <system_error>

#include <signal.h>

namespace warden::detail {

namespace {

// The longest line is 64 KiB plus a "bytes cut" marker; at 560 bytes of stack per character
// (measured for `(a|b)*c`) it needs 36 MiB. Only the pages a match touches are committed.
constexpr std::size_t matcher_stack_size = 64 * 1024 * 1024;
// A match stops with error_stack once less than this is left: room for the frames the matcher
// pushes between two steps of the iterator, and for the exception's own unwinding.
constexpr std::size_t stack_margin = 1024 * 1024;
#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer keeps its own stack of 65,536 function entries per thread and crashes past
// it (SIGSEGV in the runtime). A frame takes at least 16 bytes, so half a MiB of stack keeps
// any recursion within that; a long line then ends its wait with error_stack.
constexpr std::size_t usable_stack = 512 * 1024;
#else
constexpr std::size_t usable_stack = matcher_stack_size - stack_margin;
#endif
// About 2-15 s of matching on the build machine (40-280 million steps a second, depending on
// the pattern): far beyond a sane pattern on a 64 KiB line, and a bound on how long one
// runaway pattern can keep the process's other regex waiters waiting.
constexpr std::uint64_t step_budget = std::uint64_t{1} << 29;
// How often the abandon and stop flags are read, in steps.
constexpr std::uint64_t flag_interval = 1024;

// The lowest address a match on this thread may use; set by the matcher thread.
thread_local const char* stack_floor = nullptr;

struct match_bounds {
    const std::atomic<bool>& abandon;
    const std::atomic<bool>& stop;
    std::uint64_t steps = 0;

    void step() {
        if (static_cast<const char*>(__builtin_frame_address(0)) < stack_floor)
            throw std::regex_error(std::regex_constants::error_stack);
        if (++steps % flag_interval != 0)
            return;
        if (abandon.load(std::memory_order_relaxed) || stop.load(std::memory_order_relaxed))
            throw match_abandoned{};
        if (steps > step_budget)
            throw std::regex_error(std::regex_constants::error_complexity);
    }
};

// A pointer into the line that counts every step std::regex's matcher takes with it.
class bounded_iterator {
  public:
    using iterator_category = std::bidirectional_iterator_tag;
    using value_type = char;
    using difference_type = std::ptrdiff_t;
    using pointer = const char*;
    using reference = const char&;

    bounded_iterator() = default;
    bounded_iterator(const char* at, match_bounds* bounds)
        : at_(at)
        , bounds_(bounds) {}

    reference operator*() const {
        bounds_->step();
        return *at_;
    }
    bounded_iterator& operator++() {
        bounds_->step();
        ++at_;
        return *this;
    }
    bounded_iterator operator++(int) {
        auto before = *this;
        ++*this;
        return before;
    }
    bounded_iterator& operator--() {
        bounds_->step();
        --at_;
        return *this;
    }
    bounded_iterator operator--(int) {
        auto before = *this;
        --*this;
        return before;
    }
    bool operator==(const bounded_iterator& other) const {
        if (bounds_ != nullptr)
            bounds_->step();
        return at_ == other.at_;
    }

  private:
    const char* at_ = nullptr;
    match_bounds* bounds_ = nullptr;
};

} // namespace

bool is_plain_pattern(std::string_view pattern) noexcept {
    return pattern.find_first_of("^$\\.*+?()[]{}|") == std::string_view::npos;
}

bool bounded_regex_search(std::string_view line, const std::regex& pattern,
                          const std::atomic<bool>& abandon, const std::atomic<bool>& stop) {
    match_bounds bounds{abandon, stop};
    return std::regex_search(bounded_iterator(line.data(), &bounds),
                             bounded_iterator(line.data() + line.size(), &bounds), pattern);
}

line_matcher::line_matcher(deliver_function deliver, unique_function<void()> retired)
    : deliver_(std::move(deliver))
    , retired_(std::move(retired)) {}

line_matcher::~line_matcher() {
    abandon();
}

void line_matcher::abandon() noexcept {
    silent_.store(true, std::memory_order_relaxed);
    stop();
}

bool line_matcher::submit(std::shared_ptr<const std::string> line,
                          std::vector<std::shared_ptr<line_waiter>> waiters) {
    {
        std::unique_lock lock(mutex_);
        const std::size_t bytes = line ? line->size() : 0;
        if (line && pending_bytes_ + bytes > max_pending_bytes)
            return false;
        if (thread_state_ == thread_state::retired) {
            // It has ended, or is about to: it takes no lock on its way out.
            thread_state_ = thread_state::none;
            const pthread_t retired = thread_;
            lock.unlock();
            ::pthread_join(retired, nullptr);
            lock.lock();
        }
        if (thread_state_ == thread_state::none) {
            pthread_attr_t attr;
            ::pthread_attr_init(&attr);
            ::pthread_attr_setstacksize(&attr, matcher_stack_size);
            // Every signal blocked while the thread starts, so that it inherits the mask: a
            // helper thread must not be the one the kernel picks to run the application's
            // handlers.
            sigset_t all;
            sigset_t previous;
            sigfillset(&all);
            ::pthread_sigmask(SIG_SETMASK, &all, &previous);
            const int error = ::pthread_create(&thread_, &attr, &thread_main, this);
            ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
            ::pthread_attr_destroy(&attr);
            if (error != 0)
                throw std::system_error(error, std::system_category(),
                                        "warden: cannot start the line matcher thread");
            ::pthread_setname_np(thread_, "warden match");
            thread_state_ = thread_state::running;
        }
        pending_bytes_ += bytes;
        jobs_.push_back({std::move(line), std::move(waiters)});
    }
    wake_.notify_one();
    return true;
}

void line_matcher::stop() noexcept {
    bool started;
    {
        std::lock_guard lock(mutex_);
        stopping_.store(true, std::memory_order_relaxed);
        started = std::exchange(thread_state_, thread_state::none) != thread_state::none;
    }
    wake_.notify_one();
    if (started)
        ::pthread_join(thread_, nullptr);
}

void line_matcher::retire_when_idle() noexcept {
    {
        std::lock_guard lock(mutex_);
        retiring_ = true;
    }
    wake_.notify_one();
}

void line_matcher::join_retired() noexcept {
    pthread_t retired;
    {
        std::lock_guard lock(mutex_);
        if (thread_state_ != thread_state::retired)
            return;
        thread_state_ = thread_state::none;
        retired = thread_;
    }
    ::pthread_join(retired, nullptr);
}

void* line_matcher::thread_main(void* self) noexcept {
    pthread_attr_t attr;
    void* low = nullptr;
    std::size_t size = 0;
    if (::pthread_getattr_np(::pthread_self(), &attr) == 0) {
        ::pthread_attr_getstack(&attr, &low, &size);
        ::pthread_attr_destroy(&attr);
    }
    // Without its bounds the stack is taken to be the size asked for, below this frame.
    const auto* here = static_cast<const char*>(__builtin_frame_address(0));
    stack_floor = low != nullptr ? static_cast<const char*>(low) + stack_margin
                                 : here - matcher_stack_size + stack_margin;
    stack_floor = std::max(stack_floor, here - usable_stack);
    static_cast<line_matcher*>(self)->serve();
    return nullptr;
}

void line_matcher::serve() noexcept {
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return !jobs_.empty() || stopping_.load() || retiring_; });
        if (jobs_.empty()) {
            if (stopping_.load() || silent_.load(std::memory_order_relaxed))
                return; // stop() joins it
            thread_state_ = thread_state::retired;
            lock.unlock();
            try {
                retired_();
            } catch (...) {
                // Out of memory posting it: the next submit() or stop() joins this thread.
            }
            return;
        }
        job j = std::move(jobs_.front());
        jobs_.pop_front();
        pending_bytes_ -= j.line ? j.line->size() : 0;
        lock.unlock();
        run(j);
        j = {}; // the waiters go before the lock is taken again
        lock.lock();
    }
}

void line_matcher::run(job& j) {
    for (auto& w : j.waiters) {
        if (silent_.load(std::memory_order_relaxed))
            return;
        if (w->settled_by_matcher || w->claimed.load(std::memory_order_acquire))
            continue;
        match_verdict verdict{w, nullptr, nullptr, false};
        if (!j.line || stopping_.load(std::memory_order_relaxed)) {
            verdict.ended = true;
        } else {
            try {
                if (!bounded_regex_search(*j.line, *w->pattern, w->claimed, stopping_))
                    continue;
                verdict.line = j.line;
            } catch (const match_abandoned&) {
                if (!stopping_.load(std::memory_order_relaxed))
                    continue; // claimed meanwhile: its claimer completes it
                verdict.ended = true;
            } catch (...) {
                verdict.error = std::current_exception();
            }
        }
        w->settled_by_matcher = true;
        try {
            deliver_(std::move(verdict));
        } catch (...) {
            // Out of memory posting the verdict: the waiter's timeout still ends its wait.
        }
    }
}

} // namespace warden::detail
