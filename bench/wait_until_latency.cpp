// Figure: sup.wait_until(pred, 60 s, poll 10 ms) woken by a child's failure: latency p99,
// target < 100 us (a poll-driven wait would show ~10 ms), also with every default.
//
// The caller blocks in wait_until on a predicate that never holds; a thread child waits until
// the predicate has been evaluated once (the caller is then about to sleep), gives it 1 ms
// to be asleep, and throws. Measured from just before the throw to the first statement of the
// caller's catch block. Fresh default-constructed supervisor per trial, capture::location,
// logger "warden" off; and the defaults (capture::stacktrace, logger on: each failure's report
// is symbolised and logged, off the waiter's path).
//
// Baseline, alternating with the warden trials: the same story without warden. A fresh
// std::thread (warden's trial starts a fresh pool thread too) waits for the first check, sleeps
// 1 ms, throws and catches, stores the exception_ptr under a mutex and notifies the condition
// variable the caller sleeps on with the same 10 ms poll; the caller rethrows it. What waking a
// sleeping thread costs on this machine, with nothing of warden's on the way.

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <warden/supervisor.hpp>

#include "common.hpp"

using namespace warden_bench;
using namespace std::chrono_literals;

namespace {

double trial(warden::capture capture) {
    warden::supervisor sup{{.threads = 1, .capture = capture}};
    std::atomic<bool> evaluated{false};
    bench_clock::time_point thrown;
    sup.spawn([&] {
        evaluated.wait(false);
        std::this_thread::sleep_for(1ms);
        thrown = bench_clock::now();
        throw std::runtime_error("wait_until trial");
    });
    try {
        sup.wait_until(
            [&] {
                if (!evaluated.exchange(true))
                    evaluated.notify_one();
                return false;
            },
            60s, 10ms);
    } catch (const std::runtime_error&) {
        return microseconds(bench_clock::now() - thrown);
    }
    std::abort(); // wait_until returned without the failure
}

double raw_trial() {
    std::mutex m;
    std::condition_variable cv;
    std::exception_ptr failure;
    std::atomic<bool> evaluated{false};
    bench_clock::time_point thrown;
    std::thread child([&] {
        evaluated.wait(false);
        std::this_thread::sleep_for(1ms);
        try {
            thrown = bench_clock::now();
            throw std::runtime_error("wait_until trial");
        } catch (...) {
            {
                std::lock_guard lock(m);
                failure = std::current_exception();
            }
            cv.notify_all();
        }
    });
    {
        std::unique_lock lock(m);
        for (;;) {
            if (!evaluated.exchange(true))
                evaluated.notify_one();
            if (failure)
                break;
            cv.wait_for(lock, 10ms);
        }
    }
    double us = -1;
    try {
        std::rethrow_exception(failure);
    } catch (const std::runtime_error&) {
        us = microseconds(bench_clock::now() - thrown);
    }
    child.join();
    return us;
}

struct samples {
    std::vector<double> warden;
    std::vector<double> raw;
};

samples run_trials(std::size_t trials, std::size_t warmup, warden::capture capture) {
    samples out;
    for (std::size_t i = 0; i < warmup + trials; ++i) {
        // Alternated, so both see the same machine.
        const double t = trial(capture);
        const double r = raw_trial();
        if (i >= warmup) {
            out.warden.push_back(t);
            out.raw.push_back(r);
        }
    }
    return out;
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t trials = smoke ? 50 : 2'000;
    const std::size_t default_trials = smoke ? 10 : 500;

    auto& logger = warden_logger();
    const auto default_level = logger.level();
    logger.set_level(spdlog::level::off);
    const auto quiet = run_trials(trials, smoke ? 5 : 20, warden::capture::location);
    const std::string note = fmt::format(
        "{} trials; thread child; capture::location; logger \"warden\" off; baseline: a "
        "condition_variable hand-off from a fresh std::thread, alternating",
        trials);
    emit({"wait_until woken by a failure, p50", percentile(quiet.warden, 50),
          percentile(quiet.raw, 50), "us", "-", verdict::info, note});
    const double p99 = percentile(quiet.warden, 99);
    emit({"wait_until woken by a failure, p99", p99, percentile(quiet.raw, 99), "us", "< 100 us",
          check(p99 < 100), note});

    logger.set_level(default_level);
    const long rss_before = resident_mb();
    const auto defaults = run_trials(default_trials, smoke ? 1 : 5, warden::capture::stacktrace);
    const double defaults_p99 = percentile(defaults.warden, 99);
    emit({"wait_until woken by a failure, defaults, p99", defaults_p99,
          percentile(defaults.raw, 99), "us", "< 100 us", check(defaults_p99 < 100),
          fmt::format("{} trials; capture::stacktrace; logger \"warden\" at {} (stderr); p50 "
                      "{:.0f} us (baseline {:.0f} us); RSS {} -> {} MB; baseline as above",
                      default_trials, spdlog::level::to_string_view(default_level),
                      percentile(defaults.warden, 50), percentile(defaults.raw, 50), rss_before,
                      resident_mb())});
    return 0;
}
