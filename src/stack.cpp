#include "stack.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cxxabi.h>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <system_error>
#include <thread>
#include <typeinfo>
#include <unordered_map>
#include <vector>

#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <boost/stacktrace/safe_dump_to.hpp>
#include <boost/stacktrace/stacktrace.hpp>

#include "leak_check.hpp"

namespace warden::detail {

std::thread start_helper_thread(const char* name, std::function<void()> body) {
    // Every signal blocked while the thread starts, so that it inherits the mask: a helper
    // thread must not be the one the kernel picks to run the application's handlers.
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    // Kept before this returns, so that no fixture's leak check can see the thread unmarked:
    // it lives as long as the process and is no test's leak.
    std::promise<void> kept;
    auto marked = kept.get_future();
    std::thread thread;
    try {
        thread = std::thread([body = std::move(body), kept = std::move(kept)]() mutable {
            keep_thread(::gettid());
            kept.set_value();
            body();
        });
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        throw;
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    pthread_setname_np(thread.native_handle(), name);
    marked.wait();
    return thread;
}

namespace {
// Deep enough to reach the test body through the spawn templates and a few user frames.
constexpr std::size_t max_spawn_depth = 32;
} // namespace

// Sized to the frames captured, not a fixed array of max_spawn_depth: every child spawned
// under capture::stacktrace keeps one for its whole life.
struct stack_capture {
    std::vector<const void*> frames;
};

namespace {

// The symbolising thread serves this process only. A fork's child inherits the thread's
// bookkeeping but not the thread, and possibly a queue mutex that another parent thread held at
// fork time, so it must never touch them: it symbolises on the calling thread. Recorded while
// warden is loaded, before any thread of ours exists.
const pid_t symbolising_process = ::getpid();

// Set once the symbolising thread is stopped at exit; symbolisations after that (from other
// static destructors) run on the caller.
std::atomic<bool> symboliser_stopped{false};

std::atomic<std::size_t> symbolising_thread_count{0};
thread_local bool symbolised_on_this_thread = false;
thread_local bool is_symbolising_thread = false;

// Frames' text by address: most reports name the same few spawn lines and helpers, and
// libbacktrace takes tens of microseconds per frame (a report of 15 frames was ~0.5 ms of the
// symbolising thread's time, each time). Bounded; an address reused by a library loaded after
// another was unloaded would keep its old name (dlclose is rare in the programs warden
// serves). Only the symbolising thread has one, as a member of an object in static storage,
// not in thread-local storage: in a fork's child the parent's threads are gone, their
// thread-local storage is never scanned, and LeakSanitizer would report a thread-local cache
// that the parent filled as leaked.
class frame_text_cache {
  public:
    const std::string& operator()(const void* address) {
        constexpr std::size_t max_cached = 16384;
        if (auto it = text_.find(address); it != text_.end()) {
            return it->second;
        }
        if (text_.size() >= max_cached) {
            text_.clear();
        }
        return text_.emplace(address, uncached(address)).first->second;
    }

    static std::string uncached(const void* address) {
        return boost::stacktrace::to_string(boost::stacktrace::frame(address));
    }

  private:
    std::unordered_map<const void*, std::string> text_;
};

// The only call into Boost's symbolisation, in its format (" 0# function at file:line"), up to
// the first null address. `cache` is the symbolising thread's, or null on any other thread.
std::string symbolise_on_this_thread(std::span<const void* const> frames,
                                     frame_text_cache* cache = nullptr) {
    if (!symbolised_on_this_thread) {
        symbolised_on_this_thread = true;
        symbolising_thread_count.fetch_add(1, std::memory_order_relaxed);
    }
    std::string out;
    out.reserve(64 * frames.size());
    for (std::size_t i = 0; i < frames.size() && frames[i] != nullptr; ++i) {
        if (i < 10) {
            out += ' ';
        }
        out += std::to_string(i);
        out += "# ";
        if (cache != nullptr) {
            out += (*cache)(frames[i]);
        } else {
            out += frame_text_cache::uncached(frames[i]);
        }
        out += '\n';
    }
    return out;
}

class symbolising_thread {
  public:
    symbolising_thread() {
        worker_ = start_helper_thread("warden symbols", [this] { serve(); });
    }

    // Requests already queued are served before the thread ends.
    ~symbolising_thread() {
        {
            const std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        worker_.join();
    }

    symbolising_thread(const symbolising_thread&) = delete;
    symbolising_thread& operator=(const symbolising_thread&) = delete;

    std::string symbolise(std::span<const void* const> frames) {
        std::packaged_task<std::string()> request(
            [this, frames] { return symbolise_on_this_thread(frames, &cache_); });
        std::future<std::string> text = request.get_future();
        bool queued = false;
        {
            const std::lock_guard lock(mutex_);
            if (!stopping_) {
                requests_.push_back(std::move(request));
                queued = true;
            }
        }
        if (!queued) {
            return symbolise_on_this_thread(frames); // exit has begun
        }
        wake_.notify_one();
        return text.get();
    }

    // False once exit has begun: then the caller runs the job itself.
    bool post(unique_function<void()>& job) {
        {
            const std::lock_guard lock(mutex_);
            if (stopping_) {
                return false;
            }
            background_.push_back(
                {std::chrono::steady_clock::now() + background_delay, std::move(job)});
        }
        wake_.notify_one();
        return true;
    }

    void expedite() {
        {
            const std::lock_guard lock(mutex_);
            if (background_.empty()) {
                return;
            }
            expedite_ = true;
        }
        wake_.notify_one();
    }

  private:
    void serve() {
        is_symbolising_thread = true;
        // SCHED_BATCH: woken by a failure's log line, this thread must not preempt the thread
        // that woke it (the kernel gives a just-woken thread the CPU at once, ahead of the
        // waker) before that one has woken the parent. It still gets its fair share of time,
        // so a report_for that waits for it is not starved. Allowed without privileges.
        const sched_param batch{};
        pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock,
                       [this] { return stopping_ || !requests_.empty() || !background_.empty(); });
            if (!requests_.empty()) {
                std::packaged_task<std::string()> request = std::move(requests_.front());
                requests_.pop_front();
                lock.unlock();
                request(); // an exception (out of memory) goes to the caller through the future
                lock.lock();
                continue;
            }
            if (background_.empty()) {
                return; // stopping, and nothing left
            }
            // A job no one waits for starts background_delay after it was queued, unless
            // someone waits for it after all: a just-woken thread preempts the others, and
            // this one would take a core from the parent it was queued behind.
            const auto due = background_.front().due;
            if (!stopping_ && !expedite_ && std::chrono::steady_clock::now() < due) {
                wake_.wait_until(lock, due,
                                 [this] { return stopping_ || expedite_ || !requests_.empty(); });
                continue;
            }
            unique_function<void()> job = std::move(background_.front().job);
            background_.pop_front();
            if (background_.empty()) {
                expedite_ = false;
            }
            lock.unlock();
            try {
                job();
            } catch (...) {
                // The job's own failure (out of memory): nothing waits for it but its counter.
            }
            job = {};
            lock.lock();
        }
    }

    // How long a background job waits before it runs (see serve()): long enough for the
    // thread that queued it and the threads it woke to have run.
    static constexpr std::chrono::microseconds background_delay{1000};

    struct background_job {
        std::chrono::steady_clock::time_point due;
        unique_function<void()> job;
    };

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::packaged_task<std::string()>> requests_;
    std::deque<background_job> background_; // runs after requests_
    bool expedite_ = false;                 // run background_ now: someone waits for it
    bool stopping_ = false;
    frame_text_cache cache_; // used by worker_ alone
    std::thread worker_;     // started in the constructor's body, once the members above exist
};

// The function-local static that owns the symbolising thread: started on first use, stopped
// and joined by exit's static destructors.
class symboliser_owner {
  public:
    symboliser_owner()
        : thread_(std::make_unique<symbolising_thread>()) {}

    ~symboliser_owner() {
        if (::getpid() != symbolising_process) {
            // A fork's child calling exit(): the thread does not exist here, and destroying its
            // condition variable would wait for the parent's waiter forever. Left as it is, and
            // reachable from static storage so that LeakSanitizer does not call it a leak.
            left_in_fork_child = thread_.release();
            return;
        }
        symboliser_stopped.store(true);
        thread_.reset();
    }

    symboliser_owner(const symboliser_owner&) = delete;
    symboliser_owner& operator=(const symboliser_owner&) = delete;

    symbolising_thread& thread() { return *thread_; }

  private:
    std::unique_ptr<symbolising_thread> thread_;
    static inline symbolising_thread* left_in_fork_child = nullptr;
};

// Null when the caller must symbolise by itself (see symbolise_frames).
symbolising_thread* shared_symboliser() {
    if (::getpid() != symbolising_process || is_symbolising_thread || symboliser_stopped.load()) {
        return nullptr;
    }
    try {
        static symboliser_owner owner;
        return &owner.thread();
    } catch (const std::system_error&) {
        return nullptr; // no thread to be had (a resource limit): the caller's own will do
    }
}

using unw_backtrace_function = int (*)(void** buffer, int size);

// libunwind's unw_backtrace walks a thread's stack with a cache of frame layouts, an order of
// magnitude faster than libgcc's _Unwind_Backtrace, which interprets DWARF CFI for every frame
// of every capture. Loaded privately (RTLD_LOCAL) rather than linked: libunwind also defines
// _Unwind_*, and linking it would put its unwinder under every C++ exception of the program.
unw_backtrace_function load_unw_backtrace() noexcept {
    void* library = ::dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
        return nullptr;
    }
    void* symbol = ::dlsym(library, "unw_backtrace");
    if (symbol == nullptr) {
        ::dlclose(library);
        return nullptr;
    }
    // Never closed: captures may run until the process ends.
    return reinterpret_cast<unw_backtrace_function>(symbol);
}

unw_backtrace_function unw_backtrace_if_loaded() noexcept {
#if defined(__SANITIZE_THREAD__)
    (void)&load_unw_backtrace;
    // Under ThreadSanitizer, libunwind's per-thread cache destructor (a pthread key's) runs
    // after TSan has torn the exiting thread down, and TSan's mutex interceptor then crashes
    // (SIGSEGV in __tsan::MutexPreLock from __nptl_deallocate_tsd). TSan builds capture with
    // Boost, which has no per-thread state. docs/sanitizers.md.
    return nullptr;
#else
    static const unw_backtrace_function loaded = load_unw_backtrace();
    return loaded;
#endif
}

// Frames of capture_stack's callers that libunwind can skip within its fixed buffer; deeper
// skips take Boost's way.
constexpr std::size_t max_unwind_skip = 16;

// Set in a forked child that closed libunwind's descriptors (forked.cpp): from then on its
// numbers may be the child's own files, and libunwind reads and writes that pipe to validate
// addresses during unw_backtrace (strace: read(fd, 1) and write(fd + 2, 1) after mincore).
bool libunwind_pipe_closed = false;

unw_backtrace_function usable_unw_backtrace() noexcept {
    return libunwind_pipe_closed ? nullptr : unw_backtrace_if_loaded();
}

} // namespace

void stop_using_libunwind() noexcept {
    libunwind_pipe_closed = true;
}

// Not inlined, so that its own frame, which both ways skip, is always there.
[[gnu::noinline]] std::size_t capture_frames(std::span<const void*> out,
                                             std::size_t skip) noexcept {
    const std::size_t first = skip + 1; // +1: this function's own frame
    std::array<void*, max_unwind_skip + 1 + max_spawn_depth> walked;
    std::size_t from = 0;  // where the kept frames start in `walked`
    std::size_t count = 0; // and how many there are
    if (const unw_backtrace_function unw_backtrace = usable_unw_backtrace();
        unw_backtrace != nullptr && skip <= max_unwind_skip) {
        // unw_backtrace's first frame is the one that calls it: this function.
        const int walked_count = unw_backtrace(walked.data(), static_cast<int>(walked.size()));
        const std::size_t total = walked_count > 0 ? static_cast<std::size_t>(walked_count) : 0;
        from = first;
        count = total > first ? total - first : 0;
    } else {
        // Boost skips `first` frames from this one; it ends the frames with a null one, which
        // it counts.
        const std::size_t dumped = boost::stacktrace::safe_dump_to(
            first, walked.data(), (max_spawn_depth + 1) * sizeof(void*));
        count = dumped > 0 ? dumped - 1 : 0;
    }
    const std::size_t kept = std::min({count, max_spawn_depth, out.size()});
    std::copy_n(walked.begin() + static_cast<std::ptrdiff_t>(from), kept, out.begin());
    return kept;
}

namespace {

std::shared_ptr<const stack_capture> capture_of(std::span<const void* const> frames) {
    auto capture = std::make_shared<stack_capture>();
    capture->frames.assign(frames.begin(), frames.end());
    return capture;
}

} // namespace

[[gnu::noinline]] std::shared_ptr<const stack_capture> capture_stack(std::size_t skip) {
    std::array<const void*, max_spawn_depth> frames;
    const std::size_t count = capture_frames(frames, skip + 1); // +1: this function's frame
    return capture_of(std::span(frames).first(count));
}

[[gnu::noinline]] std::shared_ptr<const stack_capture>
spawn_stack_cache::capture(std::size_t skip) {
    std::array<const void*, max_spawn_depth> frames;
    const std::size_t count = capture_frames(frames, skip + 1); // +1: this function's frame
    const auto captured = std::span(frames).first(count);
    {
        std::lock_guard lock(mutex_);
        if (last_ && std::ranges::equal(last_->frames, captured))
            return last_;
    }
    auto capture = capture_of(captured);
    std::lock_guard lock(mutex_);
    last_ = capture;
    return capture;
}

int capture_frames_in_handler(void** buffer, int size) noexcept {
    // Not libunwind, whatever is loaded: its first walk on a thread allocates that thread's
    // copy of libunwind's thread-local data (libunwind.so is loaded by dlopen, so its TLS is
    // made on first use, with malloc). A thread interrupted inside malloc then deadlocks on
    // its own arena lock in the handler; the stress test's dumping thread found it. (Under
    // ASan it also crashed LeakSanitizer's exit-time check.)
    return ::backtrace(buffer, size);
}

void prepare_signal_capture() noexcept {
    // The first use loads libgcc_s by dlopen: done here, outside any handler.
    void* frames[4];
    (void)::backtrace(frames, 4);
}

std::string symbolise(const stack_capture& stack) {
    return symbolise_frames(stack.frames);
}

const std::string& symbolise_batch::operator()(const stack_capture& stack) {
    auto [it, inserted] = done_.try_emplace(stack.frames);
    if (inserted)
        it->second = symbolise(stack);
    return it->second;
}

std::string symbolise_frames(std::span<const void* const> frames) {
    if (symbolising_thread* shared = shared_symboliser()) {
        return shared->symbolise(frames);
    }
    return symbolise_on_this_thread(frames);
}

void run_on_symbolising_thread(unique_function<void()> job) {
    if (symbolising_thread* shared = shared_symboliser()) {
        // Taken from `job` only when it is queued.
        if (shared->post(job)) {
            return;
        }
    }
    job();
}

void expedite_symbolising_thread() {
    if (symbolising_thread* shared = shared_symboliser()) {
        shared->expedite();
    }
}

std::size_t threads_that_symbolised() noexcept {
    return symbolising_thread_count.load(std::memory_order_relaxed);
}

std::string_view stack_capture_backend() noexcept {
    return usable_unw_backtrace() != nullptr ? "libunwind" : "boost";
}

std::string current_exception_type_name() {
    const std::type_info* type = abi::__cxa_current_exception_type();
    if (type == nullptr)
        return "<no exception>";
    int status = 0;
    char* demangled = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
    std::string name = status == 0 && demangled != nullptr ? demangled : type->name();
    std::free(demangled);
    return name;
}

} // namespace warden::detail
