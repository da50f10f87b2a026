// Figures for hang reports (docs/hang-reports.md):
//
// 1. How long sup.dump() takes with children stuck in every way a dump looks at: 100 thread
//    children blocked (each listed one is asked for its live stack by a signal), 10,000 and
//    100,000 suspended coroutine children (each listed one's await chain is read and
//    symbolised), 50 processes (each listed one's /proc entries and descendants are read).
//    A dump lists 32 children in full and counts the rest. Each series runs in a fresh
//    process, so its first dump is a process's first: it loads the debug information that
//    symbolising needs. Targets: the first dump < 1 s, the slowest of the later ones
//    < 100 ms, well under a second.
// 2. What the dump costs a program that never dumps: every handler of a coroutine child
//    passes the await chain's gate (one atomic add to enter, one to leave). Its cost per
//    handler, timed in a loop, against one resumption of a raw co_spawned coroutine (a
//    post and a resume, the cheapest handler a child can have). Target: <= 0.15x. For
//    information, the whole of what a resumption through warden's child_executor costs:
//    100 coroutine children that each resume 10,000 times, under a supervisor on the
//    caller's io_context, against the same coroutines co_spawned raw.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <warden/warden.hpp>

#include "common.hpp"
// The gate is internal; it is timed by itself so that its figure is not lost in the noise of
// a whole resumption.
#include "../src/coroutine_child.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace warden_bench;

namespace {

struct series {
    double first_ms = 0;
    double median_ms = 0;    // of the dumps after the first
    double max_later_ms = 0; // of the dumps after the first
    std::size_t bytes = 0;
};

series time_dumps(const warden::supervisor& sup, int count) {
    std::vector<double> ms;
    std::size_t bytes = 0;
    for (int i = 0; i < count; ++i) {
        const auto start = bench_clock::now();
        const std::string text = sup.dump();
        ms.push_back(std::chrono::duration<double, std::milli>(bench_clock::now() - start).count());
        bytes = text.size();
    }
    const std::vector<double> later(ms.begin() + 1, ms.end());
    return {ms.front(), percentile(later, 50), *std::max_element(later.begin(), later.end()),
            bytes};
}

void emit_series(const std::string& what, const series& s, int count) {
    emit({fmt::format("dump: {}, the process's first", what), s.first_ms, std::nullopt, "ms",
          "< 1000 ms", check(s.first_ms < 1000),
          fmt::format("a fresh process; loads the debug information; {} bytes of text", s.bytes)});
    emit({fmt::format("dump: {}, slowest of the next {}", what, count - 1), s.max_later_ms,
          std::nullopt, "ms", "< 100 ms", check(s.max_later_ms < 100),
          fmt::format("median {:.1f} ms", s.median_ms)});
}

asio::awaitable<void> suspended_forever(std::atomic<int>& started) {
    asio::steady_timer never(co_await asio::this_coro::executor,
                             asio::steady_timer::time_point::max());
    ++started;
    co_await never.async_wait(asio::use_awaitable);
}

asio::awaitable<void> one_level_down(std::atomic<int>& started) {
    co_await suspended_forever(started);
}

series coroutine_dumps(int children, int count) {
    warden::supervisor sup{{.name = "coroutines", .capture = warden::capture::location}};
    std::atomic<int> started{0};
    for (int i = 0; i < children; ++i)
        sup.spawn([&started]() -> asio::awaitable<void> { co_await one_level_down(started); });
    while (started.load() < children)
        std::this_thread::sleep_for(1ms);
    auto s = time_dumps(sup, count);
    sup.cancel();
    sup.wait();
    return s;
}

series thread_dumps(int children, int count) {
    warden::supervisor sup{{.name = "threads",
                            .threads = static_cast<std::size_t>(children),
                            .capture = warden::capture::location}};
    std::latch started(children);
    for (int i = 0; i < children; ++i)
        sup.spawn([&started](std::stop_token stop) {
            started.count_down();
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock lock(m);
            cv.wait(lock, stop, [] { return false; });
        });
    started.wait();
    auto s = time_dumps(sup, count);
    sup.cancel();
    sup.wait();
    return s;
}

series process_dumps(int children, int count) {
    warden::supervisor sup{{.name = "processes", .capture = warden::capture::location}};
    std::vector<warden::process*> all;
    for (int i = 0; i < children; ++i)
        all.push_back(&sup.spawn_process({.argv = {"sh", "-c", "echo up; exec sleep 1000"}}));
    for (auto* p : all)
        p->wait_for_line_blocking("up", 30s);
    auto s = time_dumps(sup, count);
    sup.cancel();
    try {
        sup.wait();
    } catch (...) { // cancelled processes end by SIGTERM: not a failure, but be sure
    }
    return s;
}

asio::awaitable<void> resume_often(int times) {
    for (int i = 0; i < times; ++i)
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

double raw_resumes_ms(int children, int times) {
    asio::io_context io;
    const auto start = bench_clock::now();
    for (int i = 0; i < children; ++i)
        asio::co_spawn(io, resume_often(times), [](std::exception_ptr e) {
            if (e)
                std::rethrow_exception(e);
        });
    io.run();
    return std::chrono::duration<double, std::milli>(bench_clock::now() - start).count();
}

double warden_resumes_ms(int children, int times) {
    asio::io_context io;
    const auto start = bench_clock::now();
    warden::supervisor sup{io.get_executor(), {.capture = warden::capture::location}};
    for (int i = 0; i < children; ++i)
        sup.spawn([times] { return resume_often(times); });
    bool joined = false;
    asio::co_spawn(io, sup.join(), [&joined](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
        joined = true;
    });
    io.run();
    if (!joined)
        std::abort();
    return std::chrono::duration<double, std::milli>(bench_clock::now() - start).count();
}

// Nanoseconds per enter + leave of an uncontended gate.
double gate_ns() {
    warden::detail::task_state<void> child;
    constexpr int n = 20'000'000;
    const auto start = bench_clock::now();
    for (int i = 0; i < n; ++i) {
        warden::detail::handler_gate gate(child);
        benchmark::DoNotOptimize(&child);
    }
    return std::chrono::duration<double, std::nano>(bench_clock::now() - start).count() / n;
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    warden_logger().set_level(spdlog::level::off);
    const int count = smoke ? 2 : 21;

    emit_series("100 blocked thread children",
                run_in_fresh_process([count] { return thread_dumps(100, count); }), count);
    emit_series("10,000 suspended coroutine children",
                run_in_fresh_process([count] { return coroutine_dumps(10'000, count); }), count);
    emit_series("100,000 suspended coroutine children", run_in_fresh_process([count, smoke] {
                    return coroutine_dumps(smoke ? 10'000 : 100'000, count);
                }),
                count);
    emit_series("50 sleeping processes", run_in_fresh_process([count, smoke] {
                    return process_dumps(smoke ? 5 : 50, count);
                }),
                count);

    const int children = 100;
    const int times = smoke ? 100 : 10'000;
    const int repetitions = smoke ? 1 : 11;
    std::vector<double> raw;
    std::vector<double> supervised;
    (void)raw_resumes_ms(children, times / 10); // warm-up of each
    (void)warden_resumes_ms(children, times / 10);
    for (int r = 0; r < repetitions; ++r) {
        raw.push_back(raw_resumes_ms(children, times));
        supervised.push_back(warden_resumes_ms(children, times));
    }
    const double raw_ms = percentile(raw, 50);
    const double warden_ms = percentile(supervised, 50);
    std::vector<double> gate;
    for (int r = 0; r < repetitions; ++r)
        gate.push_back(gate_ns());
    const double per_resumption_ns = raw_ms * 1e6 / (static_cast<double>(children) * times);
    const double gate_median_ns = percentile(gate, 50);
    emit({"never dumped: the await chain's gate per handler, against one raw coroutine "
          "resumption",
          gate_median_ns, per_resumption_ns, "ns", "<= 0.15x",
          check(gate_median_ns <= 0.15 * per_resumption_ns),
          fmt::format("gate: median of {} loops of 20M enter+leave; resumption: raw co_spawn, "
                      "post + resume, median of {} runs of {} x {}",
                      repetitions, repetitions, children, times)});
    emit({"coroutine resumption through warden's child_executor, 100 children x 10,000 "
          "(info)",
          warden_ms, raw_ms, "ms", "-", verdict::info,
          fmt::format("median of {} interleaved repetitions; supervisor on the caller's "
                      "io_context; every resumption passes child_executor (current child, "
                      "inline depth, the gate)",
                      repetitions)});
    return 0;
}
