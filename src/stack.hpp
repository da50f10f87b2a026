#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <warden/detail/function.hpp>

namespace warden::detail {

struct stack_capture;

// Raw frames of the calling thread, without symbols: about 0.15 us through libunwind once the
// thread has captured before (its first capture sets up a cache, about 0.1 ms), 3 us through
// Boost; symbols cost milliseconds. The first frame is the function that called
// capture_stack, or the one `skip` frames further out; at most 32 frames.
std::shared_ptr<const stack_capture> capture_stack(std::size_t skip);
// The spawn stacks of one supervisor. A spawn whose frames are those of the previous spawn
// (the children of one loop) shares that capture instead of allocating its own: the pool threads
// that free a child's record would otherwise free its stack too, across threads, for every
// child (bench_spawn_blocking: most of what capture::stacktrace cost over capture::location was
// malloc and free contending on the arena's lock).
class spawn_stack_cache {
  public:
    // As capture_stack(skip).
    std::shared_ptr<const stack_capture> capture(std::size_t skip);

  private:
    std::mutex mutex_;
    std::shared_ptr<const stack_capture> last_;
};
// The same frames into `out`, at most out.size() of them, without allocating (the throw hook
// runs it inside __cxa_throw, src/throw_site.cpp). Returns how many.
std::size_t capture_frames(std::span<const void*> out, std::size_t skip) noexcept;
// For a forked child about to close the descriptors it inherited, libunwind's pipe among them:
// its captures take Boost's way from then on. Async-signal-safe.
void stop_using_libunwind() noexcept;
// Raw frames of the calling thread into `buffer`, from a signal handler: async-signal-safe
// once prepare_signal_capture() has run (glibc's backtrace(), whose first call loads
// libgcc_s; libgcc finds frame tables with _dl_find_object, which takes no lock and does not
// allocate). Returns how many.
int capture_frames_in_handler(void** buffer, int size) noexcept;
void prepare_signal_capture() noexcept;
// "0# function at file:line" lines.
std::string symbolise(const stack_capture& stack);

// Symbolises many stacks, each distinct list of frames once: the children of one spawn loop
// share their text.
class symbolise_batch {
  public:
    const std::string& operator()(const stack_capture& stack);

  private:
    std::map<std::vector<const void*>, std::string> done_;
};

// The one place that turns addresses into text, Boost.Stacktrace's format (" 0# function at
// file:line", one line per frame, up to the first null address). In the process that loaded
// warden the work runs on one long-lived thread that the caller waits for: libbacktrace keeps
// a state per thread that symbolises, never freed (about 20 MB and 200 ms each). In a fork's
// child, on that thread itself, or after the thread is gone at exit, it runs on the caller.
std::string symbolise_frames(std::span<const void* const> frames);

// Runs `job` on the symbolising thread, after what is queued there, and returns at once: for
// work that symbolises but that no one waits for (a failure's log line). It starts a
// millisecond after it was queued, so that the threads woken by the same failure (the parent,
// the siblings) have the cores first; expedite_symbolising_thread() starts what is queued at
// once, for a caller about to wait for it. Where there is no such thread (see
// symbolise_frames), runs it here, now.
void run_on_symbolising_thread(unique_function<void()> job);
void expedite_symbolising_thread();

// For tests: how many threads of this process have symbolised (each holds a libbacktrace
// state for good), and which capture_stack uses: "libunwind" or "boost".
std::size_t threads_that_symbolised() noexcept;
std::string_view stack_capture_backend() noexcept;

// Starts one of warden's own process-lifetime threads: every signal blocked (the kernel never
// picks it for the application's handlers), named, and marked as kept for the fixtures' leak
// check before this returns.
std::thread start_helper_thread(const char* name, std::function<void()> body);

// The demangled type name of the exception in flight (inside a catch block).
std::string current_exception_type_name();

} // namespace warden::detail
