// Figure: 100k trivial blocking children on the supervisor's pool, against asio::thread_pool
// post + std::latch with the same number of threads. Target: <= 1.15x.
//
// The supervisor is `supervisor{io.get_executor(), ...}` on an idle io_context, so neither
// side has an I/O thread: the comparison is pool against pool. Both create their pool inside
// the timed region. capture::location is the figure (the stack capture is the stacktrace
// figure's subject); the default capture::stacktrace is measured too, for information.

#include <cstdlib>
#include <latch>
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
    add("warden_pool_location", [] { warden_pool(warden::capture::location); });
    add("warden_pool_stacktrace", [] { warden_pool(warden::capture::stacktrace); });
    auto medians = run_benchmarks(argc, argv);

    const double raw = median_of(medians, "raw_thread_pool");
    const double location = median_of(medians, "warden_pool_location");
    const double stacktrace = median_of(medians, "warden_pool_stacktrace");
    const std::string threads = fmt::format("{} pool threads", pool_threads());
    emit({"blocking: 100k trivial children, capture::location", location, raw, "ms", "<= 1.15x",
          check(location <= 1.15 * raw),
          fmt::format("{}; median of {} interleaved repetitions, each in a fresh process", threads,
                      repetitions)});
    emit({"blocking: same, capture::stacktrace (info)", stacktrace, raw, "ms", "-", verdict::info,
          threads});
    return 0;
}
