// Figure: child throws -> parent's `co_await sup.join()` resumed, p50 and p99 over 10k trials,
// for a coroutine child and for a thread (blocking) child. Targets: p50 < 20 us, p99 < 100 us.
//
// Measured from just before the child's `throw` to the first statement of the parent's catch
// block, with steady_clock (one clock for every thread). The parent is a coroutine on an
// io_context run by this thread, and the supervisor is `supervisor{io.get_executor()}`, so a
// coroutine child runs on the parent's thread and a thread child on the pool. Each trial has a
// fresh supervisor (fail_fast closes it), and the child throws only once the parent's join
// is suspended, so the whole wake-up path is measured.
//
// Two sets of target rows: capture::location with the "warden" logger off, and the defaults
// (capture::stacktrace, logger at its default level, so every failure's report is symbolised
// and logged, on the symbolising thread, after the parent was woken); the RSS growth of the
// defaults trials is in the note.

#include <atomic>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <warden/supervisor.hpp>

#include "common.hpp"

namespace asio = boost::asio;
using namespace warden_bench;

namespace {

struct trial_times {
    bench_clock::time_point thrown;
    bench_clock::time_point caught;
};

asio::awaitable<void> join_and_catch(warden::supervisor& sup, trial_times& times) {
    try {
        co_await sup.join();
    } catch (const std::runtime_error&) {
        times.caught = bench_clock::now();
    }
}

void check_handler(std::exception_ptr e) {
    if (e)
        std::rethrow_exception(e);
}

double coroutine_trial(asio::io_context& io, warden::capture capture) {
    trial_times times;
    {
        warden::supervisor sup{io.get_executor(), {.capture = capture}};
        sup.spawn([&times]() -> asio::awaitable<void> {
            // Two turns of the io_context: the parent's join runs and suspends first.
            auto executor = co_await asio::this_coro::executor;
            co_await asio::post(executor, asio::use_awaitable);
            co_await asio::post(executor, asio::use_awaitable);
            times.thrown = bench_clock::now();
            throw std::runtime_error("latency trial");
        });
        asio::co_spawn(io, join_and_catch(sup, times), check_handler);
        io.run();
        io.restart();
    }
    return microseconds(times.caught - times.thrown);
}

double thread_trial(asio::io_context& io, warden::capture capture) {
    trial_times times;
    {
        warden::supervisor sup{io.get_executor(), {.threads = 1, .capture = capture}};
        std::atomic<bool> go{false};
        sup.spawn([&times, &go] {
            go.wait(false);
            times.thrown = bench_clock::now();
            throw std::runtime_error("latency trial");
        });
        asio::co_spawn(io, join_and_catch(sup, times), check_handler);
        // Runs after the parent's first turn, in which its join suspends.
        asio::post(io, [&go] {
            go.store(true);
            go.notify_one();
        });
        io.run();
        io.restart();
    }
    return microseconds(times.caught - times.thrown);
}

// What the thread child's figure would be without warden: the same hand-off written in plain
// Asio. A fresh one-thread pool runs the throwing job; it catches, posts the exception to the
// parent's io_context and cancels the timer the parent coroutine waits on, which rethrows.
// The parent sleeps in io.run() as with warden, so this is the machine's cost of waking it.
double raw_thread_trial(asio::io_context& io) {
    trial_times times;
    asio::thread_pool pool(1);
    asio::steady_timer wake(io, asio::steady_timer::time_point::max());
    std::exception_ptr failure;
    std::atomic<bool> go{false};
    asio::post(pool, [&] {
        go.wait(false);
        try {
            times.thrown = bench_clock::now();
            throw std::runtime_error("latency trial");
        } catch (...) {
            asio::post(io, [&failure, &wake, error = std::current_exception()] {
                failure = error;
                wake.cancel();
            });
        }
    });
    auto parent = [&]() -> asio::awaitable<void> {
        co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
        try {
            std::rethrow_exception(failure);
        } catch (const std::runtime_error&) {
            times.caught = bench_clock::now();
        }
    };
    asio::co_spawn(io, parent, check_handler);
    asio::post(io, [&go] {
        go.store(true);
        go.notify_one();
    });
    io.run();
    io.restart();
    pool.join();
    return microseconds(times.caught - times.thrown);
}

struct samples {
    std::vector<double> coroutine;
    std::vector<double> thread;
    std::vector<double> raw_thread;
};

samples run_trials(std::size_t trials, std::size_t warmup, warden::capture capture) {
    asio::io_context io;
    samples out;
    for (std::size_t i = 0; i < warmup + trials; ++i) {
        // Alternated, so both kinds see the same machine load.
        const double c = coroutine_trial(io, capture);
        const double t = thread_trial(io, capture);
        const double r = raw_thread_trial(io);
        if (i >= warmup) {
            out.coroutine.push_back(c);
            out.thread.push_back(t);
            out.raw_thread.push_back(r);
        }
    }
    return out;
}

void emit_percentiles(const std::string& what, const std::vector<double>& s, bool targets,
                      const std::string& note) {
    const double p50 = percentile(s, 50);
    const double p99 = percentile(s, 99);
    emit({what + ", p50", p50, std::nullopt, "us", targets ? "< 20 us" : "-",
          targets ? check(p50 < 20) : verdict::info, note});
    emit({what + ", p99", p99, std::nullopt, "us", targets ? "< 100 us" : "-",
          targets ? check(p99 < 100) : verdict::info, note});
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t trials = smoke ? 200 : 10'000;
    const std::size_t default_trials = smoke ? 20 : 2'000;

    auto& logger = warden_logger();
    const auto default_level = logger.level();
    logger.set_level(spdlog::level::off);
    const auto quiet = run_trials(trials, smoke ? 10 : 100, warden::capture::location);
    const std::string quiet_note =
        fmt::format("{} trials; capture::location; logger \"warden\" off", trials);
    emit_percentiles("failure -> join: coroutine child", quiet.coroutine, true, quiet_note);
    emit_percentiles("failure -> join: thread child", quiet.thread, true, quiet_note);
    emit_percentiles(
        "failure -> parent, no warden: plain Asio hand-off from a pool thread (info)",
        quiet.raw_thread, false,
        fmt::format("{} trials, alternating with the rows above: a fresh thread_pool(1) "
                    "job catches, posts the exception_ptr to the parent's io_context "
                    "and cancels the timer the parent awaits",
                    trials));

    logger.set_level(default_level);
    const long rss_before = resident_mb();
    const auto defaults = run_trials(default_trials, smoke ? 2 : 100, warden::capture::stacktrace);
    const std::string defaults_note = fmt::format(
        "{} trials; defaults: capture::stacktrace, logger \"warden\" at {} (stderr); "
        "RSS {} -> {} MB",
        default_trials, spdlog::level::to_string_view(default_level), rss_before, resident_mb());
    emit_percentiles("failure -> join, defaults: coroutine child", defaults.coroutine, true,
                     defaults_note);
    emit_percentiles("failure -> join, defaults: thread child", defaults.thread, true,
                     defaults_note);
    return 0;
}
