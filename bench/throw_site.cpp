// Figures for throw-site stacks (docs/design.md, "Throw sites"): what a throw costs with warden's
// __cxa_throw hook linked in.
//
// 1. Outside any child the hook must cost nothing measurable. Every throw of a program that
//    links warden goes through it, so the baseline cannot be the same program without warden:
//    it is the same throw handed to the C++ runtime's own __cxa_throw directly (found as the
//    hook finds it, with dlsym(RTLD_NEXT)). Both are spelled out as the compiler spells a throw
//    expression (allocate, construct, __cxa_throw) so that they differ in nothing but which
//    __cxa_throw they call. Target: <= 1.05x.
// 2. Inside a child of a supervisor with capture::stacktrace, a throw records its stack
//    (libunwind, ~0.15 us) and enters it in the side table; its exception's destruction takes it
//    out. Against the same throw in a child of a capture::location supervisor, which records
//    nothing. Target: <= 1.5x: the capture is a walk of up to 34 frames, the table two short
//    critical sections and a node allocation, against a throw's unwinding of four frames,
//    1-2 us. For information, the location child against the same throws outside any child:
//    the hook's gate in a child that records nothing. The children are coroutine children
//    of supervisors on this thread's io_context, so that both sides run on one thread: with
//    thread children on pool threads the ratio came out 1.1-1.7x from run to run, the
//    location child's throws at times 25 % faster than the same throws on the calling thread.
//    A thread child's throws take the same path through the hook.
//
// Each throw is three calls deep and caught by the loop. The two sides of a figure are timed
// in alternating chunks of 1,000 throws, 20 chunks each per repetition, so that a change of
// load on a shared machine falls on both alike; medians of 15 repetitions. (callgrind, on the
// first figure's two throws: 17,250 instructions per throw through the hook, 17,125 without.)

#include <chrono>
#include <cstdio>
#include <cxxabi.h>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include <dlfcn.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <warden/supervisor.hpp>

#include "common.hpp"

namespace asio = boost::asio;
using namespace warden_bench;

namespace {

// Read at run time, so that the compiler cannot see that the helpers always throw.
volatile bool throw_now = true;

// Noreturn, as a throw expression's __cxa_throw is: a call the compiler thinks may return
// unwinds 15-30 % faster (measured without warden linked at all), which would flatter the
// baseline.
typedef void (*cxa_throw_function)(void*, std::type_info*, void (*)(void*))
    __attribute__((noreturn));

// The runtime's __cxa_throw, and whether warden's hook is the program's (when warden is built
// with WARDEN_THROW_SITES=OFF it is not: nothing to measure).
cxa_throw_function runtime_cxa_throw = nullptr;
bool hook_linked = false;

void find_cxa_throws() {
    runtime_cxa_throw = reinterpret_cast<cxa_throw_function>(::dlsym(RTLD_NEXT, "__cxa_throw"));
    hook_linked = runtime_cxa_throw != nullptr &&
                  ::dlsym(RTLD_DEFAULT, "__cxa_throw") != ::dlsym(RTLD_NEXT, "__cxa_throw");
}

void destroy_runtime_error(void* object) {
    static_cast<std::runtime_error*>(object)->~runtime_error();
}

enum class path { hook, runtime, plain };

template <path Path>
[[gnu::noinline]] void throw_here() {
    if (!throw_now)
        return;
    if constexpr (Path == path::plain) {
        throw std::runtime_error("bench");
    } else {
        void* object = abi::__cxa_allocate_exception(sizeof(std::runtime_error));
        new (object) std::runtime_error("bench");
        auto* type = const_cast<std::type_info*>(&typeid(std::runtime_error));
        if constexpr (Path == path::hook)
            abi::__cxa_throw(object, type, &destroy_runtime_error);
        else
            runtime_cxa_throw(object, type, &destroy_runtime_error);
    }
}

// The asm statements keep the calls from becoming tail calls that would take frames away.
template <path Path>
[[gnu::noinline]] void two_deep() {
    throw_here<Path>();
    asm volatile("" ::: "memory");
}

template <path Path>
[[gnu::noinline]] void three_deep() {
    two_deep<Path>();
    asm volatile("" ::: "memory");
}

template <path Path>
std::size_t throw_and_catch(std::size_t n) {
    std::size_t caught = 0;
    for (std::size_t i = 0; i < n; ++i) {
        try {
            three_deep<Path>();
        } catch (const std::runtime_error&) {
            ++caught;
        }
    }
    return caught;
}

// Seconds for n throws and catches on this thread, after one that is not timed (a thread's
// first capture sets up libunwind's cache for it).
template <path Path>
double timed_throws(std::size_t n) {
    if (throw_and_catch<Path>(1) != 1)
        std::abort();
    const auto start = bench_clock::now();
    if (throw_and_catch<Path>(n) != n)
        std::abort();
    return std::chrono::duration<double>(bench_clock::now() - start).count();
}

struct pair_of_times {
    std::vector<double> first;  // seconds per repetition
    std::vector<double> second; // the same repetitions
};

// `repetitions` times: `chunks` chunks of each side, alternating which goes first.
template <class First, class Second>
pair_of_times alternate(int repetitions, int chunks, First first, Second second) {
    pair_of_times times;
    for (int r = 0; r < repetitions; ++r) {
        double a = 0;
        double b = 0;
        for (int c = 0; c < chunks; ++c) {
            if ((c + r) % 2 == 0) {
                a += first();
                b += second();
            } else {
                b += second();
                a += first();
            }
        }
        times.first.push_back(a);
        times.second.push_back(b);
    }
    return times;
}

// One chunk in a new coroutine child of `sup`, run to its end by this thread: the children of
// both supervisors and the throws outside any child all run on the same thread, whose stack,
// caches and core they share.
double chunk_in_child(asio::io_context& io, warden::supervisor& sup, std::size_t chunk) {
    double seconds = 0;
    sup.spawn([&seconds, chunk]() -> asio::awaitable<void> {
        seconds = timed_throws<path::plain>(chunk);
        co_return;
    });
    io.restart();
    io.run();
    return seconds;
}

// Each pair of sides in alternating chunks: a child of a capture::stacktrace supervisor against
// one of a capture::location supervisor, and that one against this thread outside any child.
struct child_times {
    pair_of_times stacktrace_and_location;
    pair_of_times location_and_outside;
};

child_times in_children(int repetitions, int chunks, std::size_t chunk) {
    asio::io_context io;
    warden::supervisor with_stacks{io.get_executor(), {.name = "stacktrace"}};
    warden::supervisor without{io.get_executor(),
                               {.name = "location", .capture = warden::capture::location}};
    auto in = [&io, chunk](warden::supervisor& sup) {
        return [&io, &sup, chunk] { return chunk_in_child(io, sup, chunk); };
    };
    return {alternate(repetitions, chunks, in(with_stacks), in(without)),
            alternate(repetitions, chunks, in(without),
                      [chunk] { return timed_throws<path::plain>(chunk); })};
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t chunk = smoke ? 100 : 1000;
    const int chunks = 20;
    const int repetitions = smoke ? 2 : 15;
    find_cxa_throws();
    const std::string outside = "throw+catch outside any child: warden's __cxa_throw hook vs "
                                "the runtime's called directly";
    const std::string inside =
        "throw+catch in a child: capture::stacktrace (throw site) vs capture::location";
    if (!hook_linked) {
        const std::string why = "no hook: warden built with WARDEN_THROW_SITES=OFF";
        emit({outside, 0, std::nullopt, "us", "<= 1.05x", verdict::not_run, why});
        emit({inside, 0, std::nullopt, "us", "<= 1.5x", verdict::not_run, why});
        return 0;
    }

    const auto throws = static_cast<double>(chunk) * chunks;
    // Microseconds per throw, the median of the repetitions.
    auto per_throw = [throws](const std::vector<double>& seconds) {
        return percentile(seconds, 50) * 1e6 / throws;
    };
    const auto hook_and_runtime = alternate(
        repetitions, chunks, [chunk] { return timed_throws<path::hook>(chunk); },
        [chunk] { return timed_throws<path::runtime>(chunk); });
    const auto children = in_children(repetitions, chunks, chunk);

    const double hook = per_throw(hook_and_runtime.first);
    const double runtime = per_throw(hook_and_runtime.second);
    const double stacktrace = per_throw(children.stacktrace_and_location.first);
    const double location = per_throw(children.stacktrace_and_location.second);
    const std::string how =
        fmt::format("{} throws three calls deep per side and repetition, in alternating chunks "
                    "of {}; median of {} repetitions",
                    chunk * chunks, chunk, repetitions);
    emit({outside, hook, runtime, "us", "<= 1.05x", check(hook <= 1.05 * runtime), how});
    emit({inside, stacktrace, location, "us", "<= 1.5x", check(stacktrace <= 1.5 * location),
          how + "; coroutine children of supervisors on this thread's io_context"});
    emit({"throw+catch in a child of a capture::location supervisor vs outside any child (info)",
          per_throw(children.location_and_outside.first),
          per_throw(children.location_and_outside.second), "us", "-", verdict::info,
          how + "; plain throw expressions"});
    return 0;
}
