#pragma once

// Throw sites: the stack at the `throw` of an exception raised inside a child, for
// failure_report::throw_stack. Private to src/.
//
// warden defines the Itanium C++ ABI's __cxa_throw, which every throw expression calls, and
// passes each call on to the C++ runtime's own (found once with dlsym(RTLD_NEXT)). On a
// thread that runs a child of a supervisor with capture::stacktrace (or in a forked child's
// process, whose function is all it runs) the hook records the raw frames first, keyed by the
// thrown object's address, and gives the runtime a destructor of its own for the object, which
// forgets the frames and then runs the object's destructor. So a record lives exactly as long
// as its exception object, and a later object at the same address can never inherit it. A
// rethrow (`throw;`, std::rethrow_exception) throws the same object without calling
// __cxa_throw: the first site stays. Anywhere else the hook costs a thread_local load, the
// load of a process-wide flag and a branch. docs/design.md, "Throw sites", has the runtimes
// it works with.

#include <cstddef>
#include <exception>
#include <string>
#include <typeinfo>
#include <vector>

namespace warden::detail {

// The address of `error`'s exception object: equal for two exception_ptrs exactly when they
// compare equal.
const void* object_of(const std::exception_ptr& error) noexcept;

// The raw frames recorded at the throw of `error`'s object, the throwing function first (return
// addresses, as capture_stack gives them); empty if none were.
std::vector<const void*> throw_site_frames(const std::exception_ptr& error);

// failure_report::throw_stack for `error`: its recorded frames, symbolised (milliseconds); for
// a forked child's remote_error, the text the child sent; else empty.
std::string throw_stack_text(const std::exception_ptr& error);

// In a forked child's process, before its function runs: every throw of the process records
// its site from then on.
void record_every_throw() noexcept;

// False when warden was built with WARDEN_THROW_SITES=OFF: no hook, every throw_stack empty.
bool throw_sites_enabled() noexcept;

// For tests: how many exception objects now alive have a recorded site.
std::size_t recorded_throw_sites() noexcept;

// The hook's side (throw_hook.cpp).

using throw_destructor = void (*)(void*);
using cxa_throw_function = void (*)(void*, std::type_info*, throw_destructor);

// Set by record_every_throw().
extern bool every_throw_recorded;
// Called by the hook, on a thread that runs a child or wherever every_throw_recorded: records
// the throw's stack if it is wanted there, and returns the destructor to give the runtime
// (the object's own, or one that forgets the record first).
throw_destructor record_throw(void* object, throw_destructor destroy) noexcept;
// The C++ runtime's __cxa_throw, the next definition after warden's; aborts with a message if
// there is none.
cxa_throw_function find_runtime_cxa_throw() noexcept;
// Defined with the hook: true.
bool throw_hook_linked() noexcept;

} // namespace warden::detail
