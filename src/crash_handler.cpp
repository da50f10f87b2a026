#include "crash_handler.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unwind.h>

#include "stack.hpp"

namespace warden::detail {
namespace {

constexpr int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

// Enough to see how the crash was reached (a runaway recursion fills it with one function, which
// is the point), and small enough that the dump plus its null terminator goes out in one write
// below PIPE_BUF: atomic, and it cannot block on a pipe the parent has not started reading.
constexpr std::size_t max_dump_frames = 128;
static_assert((max_dump_frames + 1) * sizeof(void*) <= PIPE_BUF);

// Room for the frames above the interrupted one (this handler, the kernel's signal trampoline)
// which are walked but not written.
constexpr std::size_t handler_frames = 8;

// The handler itself needs little; the unwinder it calls interprets DWARF CFI, and the kernel
// puts the full register and vector state on this stack before the handler runs.
constexpr std::size_t alt_stack_size = 256 * 1024;

volatile std::sig_atomic_t dump_fd = -1;
std::atomic_flag dump_started;
void* alt_stack = nullptr;

struct frame_walk {
    const void** frames;
    std::size_t capacity;
    std::size_t count;
    std::size_t interrupted; // index of the frame the signal interrupted, or capacity
};

// Why not boost::stacktrace::safe_dump_to: it records return addresses, which point after the
// call, and when the call is the last instruction of a function (a call to abort(), which never
// returns) that is already the next function, so the report names the wrong one.
// _Unwind_GetIPInfo tells the two kinds of frame apart, so every address written here lies
// inside the instruction that was executing: the call for callers, the faulting instruction for
// the interrupted frame.
_Unwind_Reason_Code record_frame(_Unwind_Context* context, void* arg) {
    auto& walk = *static_cast<frame_walk*>(arg);
    int exact = 0;
    std::uintptr_t ip = _Unwind_GetIPInfo(context, &exact);
    if (ip == 0) {
        return _URC_END_OF_STACK;
    }
    if (!exact) {
        --ip;
    } else if (walk.interrupted == walk.capacity) {
        walk.interrupted = walk.count;
    }
    walk.frames[walk.count++] = reinterpret_cast<const void*>(ip);
    return walk.count == walk.capacity ? _URC_END_OF_STACK : _URC_NO_REASON;
}

// Async-signal-safe: a stack buffer, the unwinder and one write().
void dump_frames(int fd) noexcept {
    const void* frames[handler_frames + max_dump_frames + 1];
    frame_walk walk{frames, handler_frames + max_dump_frames, 0, handler_frames + max_dump_frames};
    _Unwind_Backtrace(record_frame, &walk);
    // Frame 0 is the function that crashed; if the unwinder found no signal frame (it should
    // always find one), the handler's own frames are kept rather than losing the rest.
    const std::size_t first = walk.interrupted < walk.count ? walk.interrupted : 0;
    const std::size_t count = std::min(walk.count - first, max_dump_frames);
    frames[first + count] = nullptr;
    [[maybe_unused]] const ssize_t written =
        write(fd, frames + first, (count + 1) * sizeof(const void*));
}

void on_crash_signal(int sig) {
    // Only the first crash dumps: a second fault, say inside the unwinder while it walks a
    // wrecked stack, goes straight to dying instead of looping.
    if (!dump_started.test_and_set()) {
        dump_frames(dump_fd);
    }
    // SA_RESETHAND restored the default action on entry; unblocking makes the re-raise kill us
    // right here, by the original signal, which is what the parent's waitpid must report.
    sigset_t this_signal;
    sigemptyset(&this_signal);
    sigaddset(&this_signal, sig);
    pthread_sigmask(SIG_UNBLOCK, &this_signal, nullptr);
    raise(sig);
}

bool use_alt_stack() noexcept {
    if (alt_stack == nullptr) {
        const long page = sysconf(_SC_PAGESIZE);
        const std::size_t guard = page > 0 ? static_cast<std::size_t>(page) : 4096;
        void* mapping = mmap(nullptr, guard + alt_stack_size, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (mapping == MAP_FAILED) {
            return false;
        }
        // Stacks grow down: an inaccessible page under this one turns an overflow of the handler
        // into one more fault (which kills, the action being reset) instead of quietly
        // overwriting whatever else is mapped there.
        mprotect(mapping, guard, PROT_NONE);
        alt_stack = static_cast<char*>(mapping) + guard;
    }
    stack_t stack{};
    stack.ss_sp = alt_stack;
    stack.ss_size = alt_stack_size;
    return sigaltstack(&stack, nullptr) == 0;
}

} // namespace

void install_crash_handlers(int fd) noexcept {
    dump_fd = fd;
    dump_started.clear();

    // Unwinding once outside any handler does the lazy parts (binding _Unwind_Backtrace and
    // friends, libgcc's first lookup of unwind tables), which are not async-signal-safe; the
    // handler then only repeats work whose setup is done.
    const void* warm_up[4];
    frame_walk walk{warm_up, 4, 0, 4};
    _Unwind_Backtrace(record_frame, &walk);

    struct sigaction action {};
    action.sa_handler = on_crash_signal;
    sigemptyset(&action.sa_mask);
    // Without an alternate stack the handler still serves every crash but a stack overflow;
    // for that one the kernel cannot run it and kills the child by SIGSEGV, without frames.
    action.sa_flags = SA_RESETHAND | (use_alt_stack() ? SA_ONSTACK : 0);
    for (const int sig : crash_signals) {
        sigaction(sig, &action, nullptr);
    }
}

std::vector<const void*> crash_dump_frames(std::string_view raw) {
    // Twice what a child of ours writes: anything longer is not our dump, and symbolising a
    // megabyte of junk would only make the report slow and unreadable.
    constexpr std::size_t max_frames = 2 * (max_dump_frames + 1);
    const std::size_t count = std::min(raw.size() / sizeof(void*), max_frames);
    // The pipe's bytes sit in a char buffer, unaligned for pointers, and may end in a partial
    // pointer from a cut-short write, which is dropped.
    std::vector<const void*> frames(count);
    // Not for an empty dump (every spawn_process crash): memcpy from a null pointer is undefined
    // even for 0 bytes, and UBSan says so.
    if (count > 0)
        std::memcpy(frames.data(), raw.data(), count * sizeof(void*));
    return frames;
}

} // namespace warden::detail
