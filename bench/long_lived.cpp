// Figures: what one supervisor that lives long grows by, and whether its per-child cost grows
// with what it has run. Targets: a finished process keeps <= 4 KiB; under collect, a failure
// followed by the wait that throws it costs as much after 40,000 of them as after the first
// 1,000 (<= 1.5x); no regex matcher thread is left once the processes it served have ended.
//
// Processes: 1,000 `/bin/true` in turn on one default supervisor (capture::location), each
// waited for; heap in use (glibc's mallinfo2(): uordblks + hblkhd) before and after, per
// process. The supervisor keeps each process it ran until its own end (the `process&` it
// returned stays valid), so this is what it grows by.
//
// Failures: one `supervisor{{.policy = collect}}`, the logger off, a child that throws, then a
// wait that throws the failure_group, 40,000 times; the mean time of one such loop in the last
// 1,000 against the first 1,000 (after 100 of warm-up). The target row runs all of it on one
// thread (a coroutine child on the caller's io_context, `co_await sup.join()`), so it times
// warden's work alone. The same with a thread child and `sup.wait()` is an info row: each of
// its loops wakes a pool thread and then the waiting one, and on a VM whether a wake-up lands
// on the other, idle vCPU (tens of microseconds, bench_failure_latency's floor row) drifts over
// a run: it moved that row's means by 2-3x either way (2026-12-07, the CPU time as well, spent
// spinning before a sleep), with the code unchanged.
//
// Matcher threads: 100 processes in turn, each waited for with a regex `wait_for_line`, then
// the threads named "warden match" are counted (read again for up to 5 s: each ends on its
// own and is joined on the I/O thread).

#include <malloc.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <warden/errors.hpp>
#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include "common.hpp"
#include "helpers.hpp" // tests/: the count of threads named X, read until it settles

namespace asio = boost::asio;
using namespace warden_bench;
using namespace std::chrono_literals;

namespace {

std::size_t heap_in_use() {
    const auto info = mallinfo2();
    return info.uordblks + info.hblkhd;
}

double heap_per_finished_process(std::size_t n) {
    warden::supervisor sup{{.capture = warden::capture::location}};
    auto run_one = [&] {
        sup.spawn_process({.argv = {"/bin/true"}});
        sup.wait();
    };
    run_one(); // the first process's one-off allocations
    const std::size_t before = heap_in_use();
    for (std::size_t i = 0; i < n; ++i)
        run_one();
    const std::size_t after = heap_in_use();
    return after > before ? static_cast<double>(after - before) / static_cast<double>(n) : 0.0;
}

struct loop_costs {
    double first_us = 0; // mean of one fail-and-wait over the first `window` loops
    double last_us = 0;  // over the last `window`
};

template <class Loop>
loop_costs first_and_last(std::size_t n, std::size_t window, Loop loop) {
    for (int i = 0; i < 100; ++i)
        loop();
    auto mean_us = [&](std::size_t count) {
        const auto start = bench_clock::now();
        for (std::size_t i = 0; i < count; ++i)
            loop();
        return std::chrono::duration<double, std::micro>(bench_clock::now() - start).count() /
               static_cast<double>(count);
    };
    loop_costs costs;
    costs.first_us = mean_us(window);
    for (std::size_t i = 2 * window; i < n; ++i)
        loop();
    costs.last_us = mean_us(window);
    return costs;
}

loop_costs coroutine_fail_and_join(std::size_t n, std::size_t window) {
    asio::io_context io(1);
    warden::supervisor sup{
        io.get_executor(),
        {.policy = warden::policy::collect, .capture = warden::capture::location}};
    return first_and_last(n, window, [&] {
        sup.spawn([]() -> asio::awaitable<void> {
            throw std::runtime_error("failure");
            co_return;
        });
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                try {
                    co_await sup.join();
                } catch (const warden::failure_group&) {
                }
            },
            asio::detached);
        io.run();
        io.restart();
    });
}

loop_costs thread_fail_and_wait(std::size_t n, std::size_t window) {
    warden::supervisor sup{
        {.policy = warden::policy::collect, .capture = warden::capture::location}};
    return first_and_last(n, window, [&] {
        sup.spawn([] { throw std::runtime_error("failure"); });
        try {
            sup.wait();
        } catch (const warden::failure_group&) {
        }
    });
}

std::size_t matcher_threads_left(std::size_t n) {
    warden::supervisor sup{{.capture = warden::capture::location}};
    for (std::size_t i = 0; i < n; ++i) {
        auto& p = sup.spawn_process({.argv = {"/bin/echo", "ready 1"}});
        p.wait_for_line_blocking("re.dy [0-9]", 10s);
        sup.wait();
    }
    return warden_test::threads_named_once_settled("warden match", 0);
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t processes = smoke ? 20 : 1000;
    const std::size_t failures = smoke ? 3000 : 40000;
    const std::size_t window = smoke ? 500 : 1000;
    const std::size_t regex_processes = smoke ? 10 : 100;

    const double kept = heap_per_finished_process(processes);
    emit({"long-lived: heap kept per finished process", kept, std::nullopt, "B", "<= 4096 B",
          check(kept <= 4096),
          fmt::format("{} x /bin/true on one supervisor, mallinfo2 growth / count", processes)});

    auto& logger = warden_logger();
    const auto level = logger.level();
    logger.set_level(spdlog::level::off);
    const auto one_thread = coroutine_fail_and_join(failures, window);
    const auto two_threads = thread_fail_and_wait(failures, window);
    logger.set_level(level);
    emit({fmt::format("long-lived, collect: fail + join after {} failures, against the first {}",
                      failures, window),
          one_thread.last_us, one_thread.first_us, "us", "<= 1.5x",
          check(one_thread.last_us <= 1.5 * one_thread.first_us),
          fmt::format("a coroutine child and co_await join on one io_context{{1}}; mean of {} "
                      "loops each",
                      window)});
    emit({"long-lived, collect: same with a thread child and wait() (info)", two_threads.last_us,
          two_threads.first_us, "us", "-", verdict::info,
          fmt::format("mean of {} loops each; the cross-thread wake-ups' placement drifts",
                      window)});

    const std::size_t left = matcher_threads_left(regex_processes);
    emit({fmt::format("long-lived: regex matcher threads left after {} processes", regex_processes),
          static_cast<double>(left), std::nullopt, "threads", "0", check(left == 0),
          "each process waited for with wait_for_line_blocking(\"re.dy [0-9]\")"});
    return 0;
}
