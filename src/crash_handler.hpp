#pragma once

// Stack traces out of a forked child that dies by a signal. Private to src/.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace warden::detail {

// For the forked child only: it replaces the process's handlers for SIGSEGV, SIGBUS, SIGFPE,
// SIGILL and SIGABRT and the calling thread's alternate signal stack. On the first of those
// signals the handler writes the raw frames to `fd` with a single write, then re-raises with the
// default action, so the parent still sees death by that very signal. The frames are native
// pointers ended by a null one (Boost.Stacktrace's dump format), at most 128 of them, starting
// at the function the signal interrupted; each points into the instruction that was executing,
// not at a return address.
//
// The alternate stack belongs to the calling thread alone: a stack overflow in a thread the
// child starts later still kills the child with SIGSEGV, but leaves no frames.
void install_crash_handlers(int fd) noexcept;

// For the parent: the bytes read from that fd, as the addresses of the crash stack (at most twice
// what a child of ours writes), symbolised later by crash_text. They mean the same here as in the
// child, which was forked from this process and so has the same address-space layout. Empty or
// malformed input gives what can be made of it, often nothing, and never a crash.
std::vector<const void*> crash_dump_frames(std::string_view raw);

} // namespace warden::detail
