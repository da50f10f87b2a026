#include "throw_site.hpp"

#include <array>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <span>
#include <typeinfo>
#include <unordered_map>

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <warden/errors.hpp>

#include "core.hpp"
#include "stack.hpp"

#ifndef WARDEN_THROW_SITES
#define WARDEN_THROW_SITES 1
#endif

namespace warden::detail {

// The Itanium C++ ABI's runtimes (libstdc++, libc++ with libc++abi) both hold an
// exception_ptr as one pointer: the thrown object's address, the one __cxa_throw was given.
// A runtime laid out otherwise fails here, at compile time.
static_assert(sizeof(std::exception_ptr) == sizeof(void*),
              "throw sites read an exception_ptr as the address of its object");

const void* object_of(const std::exception_ptr& error) noexcept {
    const void* object = nullptr;
    std::memcpy(&object, static_cast<const void*>(&error), sizeof object);
    return object;
}

namespace {

// As deep as a spawn stack: the throwing function and 31 callers.
constexpr std::size_t max_throw_depth = 32;

using destructor = throw_destructor;

struct throw_site {
    destructor destroy = nullptr; // the object's own; null for a trivially destructible one
    std::size_t size = 0;
    std::array<const void*, max_throw_depth> frames{};
};

// Keys are heap addresses: pool threads that throw at once mostly take different locks.
struct shard {
    std::mutex mutex;
    std::unordered_map<const void*, throw_site> sites;
};

class site_table {
  public:
    site_table() {
        // A fork copies the locks as they are: one that another thread held would stay held in
        // the child, whose throws and exception destructors take them (a forked child's
        // function records every throw). Held by the forking thread across fork() instead.
        ::pthread_atfork(&lock_all, &unlock_all, &unlock_all);
    }

    void remember(const void* object, const throw_site& site) {
        shard& s = shard_of(object);
        std::lock_guard lock(s.mutex);
        // An entry already there would belong to a dead object the runtime freed without its
        // destructor (none does): the new object's is the true one.
        s.sites.insert_or_assign(object, site);
    }

    // Takes the object's entry out and returns its destructor.
    destructor forget(const void* object) noexcept {
        shard& s = shard_of(object);
        std::lock_guard lock(s.mutex);
        auto it = s.sites.find(object);
        if (it == s.sites.end())
            return nullptr;
        const destructor destroy = it->second.destroy;
        s.sites.erase(it);
        return destroy;
    }

    std::vector<const void*> frames_of(const void* object) {
        shard& s = shard_of(object);
        std::lock_guard lock(s.mutex);
        auto it = s.sites.find(object);
        if (it == s.sites.end())
            return {};
        const auto& site = it->second;
        // Not braces: the iterators are pointers that convert to the elements' type.
        return std::vector<const void*>(
            site.frames.begin(), site.frames.begin() + static_cast<std::ptrdiff_t>(site.size));
    }

    std::size_t size() noexcept {
        std::size_t total = 0;
        for (auto& s : shards_) {
            std::lock_guard lock(s.mutex);
            total += s.sites.size();
        }
        return total;
    }

  private:
    static constexpr std::size_t shard_count = 16;

    shard& shard_of(const void* object) noexcept {
        // Allocations are 16-byte aligned: the bits above the alignment spread them.
        return shards_[(reinterpret_cast<std::uintptr_t>(object) >> 4) % shard_count];
    }

    static void lock_all() noexcept;
    static void unlock_all() noexcept;

    std::array<shard, shard_count> shards_;
};

site_table& sites() {
    // Never destroyed: exception objects are destroyed during exit too (those the report
    // kept failures hold: failure_record.cpp), after this file's static destructors would have
    // run.
    static site_table* const table = new site_table;
    return *table;
}

void site_table::lock_all() noexcept {
    for (auto& s : sites().shards_)
        s.mutex.lock();
}

void site_table::unlock_all() noexcept {
    for (auto& s : sites().shards_)
        s.mutex.unlock();
}

// The hook's own throws (out of memory while recording) go straight to the runtime.
thread_local bool recording = false;

// The runtime's destructor for a recorded object is replaced by this one: the record goes
// first, while the object's memory is still its own, so no later object at that address can
// be given it.
void forget_then_destroy(void* object) {
    if (const destructor destroy = sites().forget(object); destroy != nullptr)
        destroy(object);
}

// Under a sanitizer whose runtime precedes warden in the lookup order (warden as a shared
// library), the sanitizer's __cxa_throw interceptor calls the hook, a frame of its own between
// the hook and the throw.
bool is_throw_entry(const void* pc) noexcept {
    Dl_info info{};
    return ::dladdr(pc, &info) != 0 && info.dli_sname != nullptr &&
           std::strstr(info.dli_sname, "__cxa_throw") != nullptr;
}

} // namespace

// Set in a forked child's process only, before its function runs and before it can have a
// second thread; never written in the parent.
bool every_throw_recorded = false;

destructor record_throw(void* object, destructor destroy) noexcept {
    // A child records its throws when it recorded its spawn: capture::stacktrace.
    const child_record* child = current_child();
    if (recording || !(every_throw_recorded || (child != nullptr && child->spawn_stack())))
        return destroy;
    recording = true;
    destructor replaced = destroy;
    throw_site site;
    site.destroy = destroy;
    // This function and the hook: the first frame kept is the function with the throw
    // expression.
    site.size = capture_frames(site.frames, 2);
    try {
        sites().remember(object, site);
        replaced = &forget_then_destroy;
    } catch (...) {
        // Out of memory: this throw goes without its site.
    }
    recording = false;
    return replaced;
}

cxa_throw_function find_runtime_cxa_throw() noexcept {
    // RTLD_NEXT searches the objects loaded after the one that holds warden: the C++ runtime,
    // or a sanitizer's interceptor that leads to it.
    auto* found = reinterpret_cast<cxa_throw_function>(::dlsym(RTLD_NEXT, "__cxa_throw"));
    if (found == nullptr) {
        // warden and the runtime in one object: a static libstdc++, whose own __cxa_throw
        // collides with the hook's at link time unless that object was not linked in.
        static constexpr char message[] =
            "warden: no C++ runtime __cxa_throw after warden's own; build warden with "
            "-DWARDEN_THROW_SITES=OFF for this link (docs/design.md, \"Throw sites\")\n";
        [[maybe_unused]] const auto written = ::write(STDERR_FILENO, message, sizeof message - 1);
        std::abort();
    }
    return found;
}

std::vector<const void*> throw_site_frames(const std::exception_ptr& error) {
    if (!error)
        return {};
    return sites().frames_of(object_of(error));
}

std::string throw_stack_text(const std::exception_ptr& error) {
    auto frames = throw_site_frames(error);
    if (frames.empty()) {
        // A forked child's exception was recorded in the child's process, which sent the text.
        try {
            if (error)
                std::rethrow_exception(error);
        } catch (const remote_error& e) {
            return e.stacktrace();
        } catch (...) {
        }
        return {};
    }
    // Return addresses: one byte back is the call itself, which names the throwing function
    // even when the call to the never-returning __cxa_throw was its last instruction.
    for (auto& frame : frames)
        frame = static_cast<const char*>(frame) - 1;
    std::size_t first = 0;
    while (first + 1 < frames.size() && first < 2 && is_throw_entry(frames[first]))
        ++first;
    return symbolise_frames(std::span(frames).subspan(first));
}

void record_every_throw() noexcept {
    every_throw_recorded = true;
}

bool throw_sites_enabled() noexcept {
#if WARDEN_THROW_SITES
    // A reference into the hook's object file, so that linking warden as a static library
    // always links the hook too, whatever the order of the link line.
    return throw_hook_linked();
#else
    return false;
#endif
}

std::size_t recorded_throw_sites() noexcept {
    return sites().size();
}

} // namespace warden::detail
