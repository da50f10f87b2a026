// The throw hook: warden's definition of the Itanium C++ ABI's __cxa_throw, which every throw
// expression of the program calls (libstdc++'s own throws too, through its PLT). What it is
// for: throw_site.hpp. Built only with WARDEN_THROW_SITES (CMakeLists.txt).
//
// Outside a child it must cost next to nothing, and leave nothing on the stack: the runtime's
// __cxa_throw is entered by a jump, so that the unwinder never walks a frame of the hook's
// (one more frame for every throw of the program to unwind, with its personality routine).
// Two things would turn that jump into a call: the [[noreturn]] on the declaration in
// <cxxabi.h> (GCC makes no tail call from a noreturn function), so this file includes no
// header that declares __cxa_throw; and -O0, so it is compiled -O2 whatever the build type.

#include <atomic>
#include <typeinfo>

#include "throw_site.hpp"

namespace warden::detail {

// core.hpp's, declared here without the Asio headers that come with it (one of them brings
// in <cxxabi.h>).
class child_record;
extern constinit thread_local child_record* running_child_;

namespace {

// Relaxed: every thread that looks it up finds the same address.
std::atomic<cxa_throw_function> runtime_cxa_throw{nullptr};

} // namespace

bool throw_hook_linked() noexcept {
    return true;
}

} // namespace warden::detail

namespace __cxxabiv1 {

extern "C" void __cxa_throw(void* object, std::type_info* type, void (*destroy)(void*)) {
    using namespace warden::detail;
    if (running_child_ != nullptr || every_throw_recorded) [[unlikely]]
        destroy = record_throw(object, destroy);
    cxa_throw_function runtime = runtime_cxa_throw.load(std::memory_order_relaxed);
    if (runtime == nullptr) [[unlikely]] {
        runtime = find_runtime_cxa_throw();
        runtime_cxa_throw.store(runtime, std::memory_order_relaxed);
    }
    runtime(object, type, destroy);
}

} // namespace __cxxabiv1
