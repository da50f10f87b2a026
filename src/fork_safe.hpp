#pragma once

// Process-wide locks and fork(). A fork copies a mutex as it is: one that another thread held
// at that moment stays held in the child, where that thread does not exist, and the child's
// first use of it (a supervisor made in a forked child enlists in the process's list) waits
// forever. So each such lock is held by the forking thread across fork(), as glibc does with
// malloc's, and released on both sides.

#include <mutex>

namespace warden::detail {

// Registers `lock`, which must live until the program ends, to be taken before every fork()
// and released after it, in the parent and in the child. Only for leaf locks: nothing else is
// taken while one of them is held (no log line, no stdio: spawn_forked holds the stdio locks
// across fork()), so the order they are taken in cannot deadlock. At most 16; past that the
// lock is not held across fork (a warden bug, not the user's).
void hold_across_fork(std::mutex& lock) noexcept;

} // namespace warden::detail
