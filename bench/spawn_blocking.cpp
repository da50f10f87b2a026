// Figure: 100k trivial blocking children on the supervisor's pool, against asio::thread_pool
// post + std::latch with the same number of threads. Target: <= 1.5x, with capture::location
// and with the default capture::stacktrace.
//
// The supervisor is `supervisor{io.get_executor(), ...}` on an idle io_context, so neither
// side has an I/O thread: the comparison is pool against pool. Both create their pool inside
// the timed region.

#include <atomic>
#include <cstdlib>
#include <latch>
#include <memory>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <warden/supervisor.hpp>

#include "common.hpp"

namespace asio = boost::asio;
using namespace warden_bench;

namespace {

constexpr std::size_t children = 100'000;

std::size_t pool_threads() {
    return std::max(1u, std::thread::hardware_concurrency());
}

void raw_thread_pool() {
    asio::thread_pool pool(pool_threads());
    std::latch done(static_cast<std::ptrdiff_t>(children));
    for (std::size_t i = 0; i < children; ++i)
        asio::post(pool, [&done] { done.count_down(); });
    done.wait();
    pool.join();
}

// The baseline plus the least that tracking each child takes: a heap record per child
// (a handle the caller could keep), a table of running children under a mutex, entered by the
// spawning thread and left by the pool thread that ran the child. Info: a floor for any
// supervisor that can name, cancel or list each of its children.
struct tracked_child {
    tracked_child* previous = nullptr;
    tracked_child* next = nullptr;
    std::shared_ptr<tracked_child> self; // the table's reference
    std::atomic<bool> done{false};
};

void raw_thread_pool_tracked() {
    asio::thread_pool pool(pool_threads());
    tracked_table<tracked_child> table;
    std::latch done(static_cast<std::ptrdiff_t>(children));
    for (std::size_t i = 0; i < children; ++i) {
        auto child = std::make_shared<tracked_child>();
        table.enter(child);
        asio::post(pool, [&table, &done, child] {
            const auto table_ref = table.leave(*child);
            child->done.store(true, std::memory_order_release);
            done.count_down();
        });
    }
    done.wait();
    pool.join();
}

void warden_pool(warden::capture capture) {
    asio::io_context io;
    warden::supervisor sup{io.get_executor(), {.threads = pool_threads(), .capture = capture}};
    for (std::size_t i = 0; i < children; ++i)
        sup.spawn([] {});
    sup.wait();
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    const int repetitions = smoke ? 2 : 21;
    auto add = [&](const char* name, auto fn) {
        add_fresh_process_benchmark(name, repetitions, fn);
    };
    add("raw_thread_pool", [] { raw_thread_pool(); });
    add("raw_thread_pool_tracked", [] { raw_thread_pool_tracked(); });
    add("warden_pool_location", [] { warden_pool(warden::capture::location); });
    add("warden_pool_stacktrace", [] { warden_pool(warden::capture::stacktrace); });
    auto medians = run_benchmarks(argc, argv);

    const double raw = median_of(medians, "raw_thread_pool");
    const double location = median_of(medians, "warden_pool_location");
    const double stacktrace = median_of(medians, "warden_pool_stacktrace");
    const double tracked = median_of(medians, "raw_thread_pool_tracked");
    const std::string threads = fmt::format("{} pool threads", pool_threads());
    emit({"blocking: 100k trivial children, capture::location", location, raw, "ms", "<= 1.5x",
          check(location <= 1.5 * raw),
          fmt::format("{}; median of {} interleaved repetitions, each in a fresh process", threads,
                      repetitions)});
    emit({"blocking: same, capture::stacktrace (the default)", stacktrace, raw, "ms", "<= 1.5x",
          check(stacktrace <= 1.5 * raw), threads});
    emit({"blocking: raw post + a record per child in a table under a mutex (info)", tracked, raw,
          "ms", "-", verdict::info,
          "the baseline plus the least that tracking each child takes: a floor for any "
          "supervisor that can name, cancel or list its children"});
    return 0;
}
