#pragma once

#include <csignal>
#include <string>

namespace warden {

// supervisor::dump() of every supervisor alive in the process, between a first line naming
// the process and a last line "warden: end of dump".
std::string dump_all();

// From now on `sig` writes dump_all() to stderr and the process carries on. The handler only
// wakes a warden thread, which builds and writes the dump. In a forked child the signal does
// what it did before (the default action). Throws std::system_error if the thread or its pipe
// cannot be made.
void install_dump_signal(int sig = SIGQUIT);

} // namespace warden
