// Load: many concurrent children in one supervisor, one failure among them.
//
//   warden_load [--coroutines 100000] [--processes 500]
//
// Starts the coroutine children (each suspended on a timer) and the processes (each
// blocked reading a FIFO), then makes one thread child fail and measures how long the
// failure takes to reach the parent's wait. Prints that latency, the total time until
// every child is gone, and the peak RSS (before and after), as one line of figures.

#include <warden/warden.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

long peak_rss_kib() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

long current_rss_kib() {
    long pages = 0, resident = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        std::fclose(f);
    }
    return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

} // namespace

int main(int argc, char** argv) {
    long coroutines = 100'000;
    long processes = 500;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view arg = argv[i];
        if (arg == "--coroutines")
            coroutines = std::stol(argv[i + 1]);
        else if (arg == "--processes")
            processes = std::stol(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: warden_load [--coroutines N] [--processes N]\n");
            return 2;
        }
    }
    // Each process holds a few descriptors (pipes, pidfd) while it runs.
    rlimit files{};
    ::getrlimit(RLIMIT_NOFILE, &files);
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);

    warden::supervisor{}.spawn([] {}).get();
    if (auto logger = spdlog::get("warden"))
        logger->set_level(spdlog::level::off);

    const auto dir =
        std::filesystem::temp_directory_path() / ("warden_load." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto fifo = (dir / "gate").string();
    ::mkfifo(fifo.c_str(), 0600);

    const long rss_start = current_rss_kib();
    double latency_us = 0;
    bool failure_reached = false;
    long rss_loaded = 0;
    const auto start = std::chrono::steady_clock::now();
    {
        warden::supervisor sup{
            warden::supervisor_options{.name = "load", .capture = warden::capture::location}};
        std::latch suspended(coroutines);
        for (long i = 0; i < coroutines; ++i)
            sup.spawn([&]() -> asio::awaitable<void> {
                asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
                suspended.count_down();
                co_await timer.async_wait(asio::use_awaitable);
            });
        for (long i = 0; i < processes; ++i)
            sup.spawn_process({.argv = {"sh", "-c", "read x < " + fifo}});
        suspended.wait();
        rss_loaded = current_rss_kib();

        std::latch go(1);
        std::chrono::steady_clock::time_point failed_at;
        sup.spawn([&] {
            go.wait();
            failed_at = std::chrono::steady_clock::now();
            throw std::runtime_error("the one failure");
        });
        go.count_down();
        try {
            sup.wait_until([] { return false; }, 60s);
        } catch (const std::runtime_error&) {
            latency_us = std::chrono::duration<double, std::micro>(
                             std::chrono::steady_clock::now() - failed_at)
                             .count();
            failure_reached = true;
        }
    }
    const double total_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::filesystem::remove_all(dir);
    errno = 0;
    const bool zombies = ::waitpid(-1, nullptr, WNOHANG) != -1 || errno != ECHILD;
    std::printf("warden_load: %ld coroutines + %ld processes; failure reached the parent in "
                "%.0f us; all done in %.2f s; RSS %ld KiB at start, %ld KiB loaded "
                "(%.0f bytes per child), peak %ld KiB; child processes left: %s\n",
                coroutines, processes, latency_us, total_s, rss_start, rss_loaded,
                1024.0 * static_cast<double>(rss_loaded - rss_start) /
                    static_cast<double>(coroutines + processes),
                peak_rss_kib(), zombies ? "yes" : "none");
    return failure_reached && !zombies ? 0 : 1;
}
