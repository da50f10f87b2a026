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
//
// A thread child's failure wakes the parent's thread from another thread, and the kernel
// decides where the parent runs: on the CPU the child failed on (the child's thread is about
// to sleep) or on the other, idle one. On a VM, waking an idle vCPU costs tens of
// microseconds by itself (the host must run it again), warden or not. So each thread trial,
// warden's and the plain-Asio one, records both CPUs, and the rows are split by placement;
// the cost of a cross-CPU wake itself, without Asio or warden, is a floor row of its own.

#include <atomic>
#include <stdexcept>
#include <thread>

#include <pthread.h>
#include <sched.h>

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
    int thrown_on = -1; // CPUs, sched_getcpu()
    int caught_on = -1;
};

// A thread child's figure, and where the parent ran relative to the failing thread.
struct hand_offs {
    std::vector<double> all;
    std::vector<double> same_cpu;
    std::vector<double> other_cpu;

    void add(const trial_times& t) {
        const double us = microseconds(t.caught - t.thrown);
        all.push_back(us);
        (t.thrown_on == t.caught_on ? same_cpu : other_cpu).push_back(us);
    }

    double other_cpu_share() const {
        return all.empty() ? 0.0
                           : 100.0 * static_cast<double>(other_cpu.size()) /
                                 static_cast<double>(all.size());
    }
};

asio::awaitable<void> join_and_catch(warden::supervisor& sup, trial_times& times) {
    try {
        co_await sup.join();
    } catch (const std::runtime_error&) {
        times.caught = bench_clock::now();
        times.caught_on = sched_getcpu();
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

trial_times thread_trial(asio::io_context& io, warden::capture capture) {
    trial_times times;
    {
        warden::supervisor sup{io.get_executor(), {.threads = 1, .capture = capture}};
        std::atomic<bool> go{false};
        sup.spawn([&times, &go] {
            go.wait(false);
            times.thrown_on = sched_getcpu();
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
    return times;
}

// What the thread child's figure would be without warden: the same hand-off written in plain
// Asio. A fresh one-thread pool runs the throwing job; it catches, posts the exception to the
// parent's io_context and cancels the timer the parent coroutine waits on, which rethrows.
// The parent sleeps in io.run() as with warden, so this is the machine's cost of waking it.
trial_times raw_thread_trial(asio::io_context& io, std::chrono::microseconds busy = {}) {
    trial_times times;
    asio::thread_pool pool(1);
    asio::steady_timer wake(io, asio::steady_timer::time_point::max());
    std::exception_ptr failure;
    std::atomic<bool> go{false};
    asio::post(pool, [&] {
        // Work before the job fails, spun, as a fresh warden pool thread runs its warm-up
        // first: a thread that has not slept since it was created (go is set by then).
        for (const auto until = bench_clock::now() + busy; bench_clock::now() < until;) {
        }
        go.wait(false);
        try {
            times.thrown_on = sched_getcpu();
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
            times.caught_on = sched_getcpu();
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
    return times;
}

// The floor under every cross-CPU figure above: one thread, pinned to the first CPU this
// process may use, wakes another asleep (a futex, std::atomic::wait) pinned to the second,
// as a failing pool thread wakes a parent that sleeps on the other CPU. The sleeper's CPU is
// idle for the waker's `busy` first, as the parent's is while the child throws. Microseconds
// from just before notify_one() to the sleeper's first statement; empty with one CPU.
std::vector<double> cross_cpu_wakes(std::size_t trials) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return {};
    int cpus[2];
    int found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; ++cpu)
        if (CPU_ISSET(cpu, &allowed))
            cpus[found++] = cpu;
    auto pin = [](int cpu) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    };
    std::vector<double> out;
    out.reserve(trials);
    std::atomic<std::size_t> turn{0}; // odd: the waker's, even: the sleeper's
    std::atomic<bool> asleep{false};
    bench_clock::time_point sent;
    std::thread sleeper([&] {
        pin(cpus[1]);
        for (std::size_t i = 0; i < trials; ++i) {
            asleep.store(true);
            turn.wait(2 * i);
            out.push_back(microseconds(bench_clock::now() - sent));
            turn.store(2 * i + 2);
            turn.notify_one();
        }
    });
    pin(cpus[0]);
    constexpr auto busy = std::chrono::microseconds(20);
    for (std::size_t i = 0; i < trials; ++i) {
        while (!asleep.exchange(false)) {
        }
        const auto until = bench_clock::now() + busy;
        while (bench_clock::now() < until) {
        }
        sent = bench_clock::now();
        turn.store(2 * i + 1);
        turn.notify_one();
        turn.wait(2 * i + 1);
    }
    sleeper.join();
    pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed);
    return out;
}

struct samples {
    std::vector<double> coroutine;
    hand_offs thread;
    hand_offs raw_thread;
    hand_offs raw_busy_thread;
};

// A fresh pool thread of warden's runs a warm-up throw before its first job (about 100 us with
// capture::stacktrace, src/executor_host.cpp), so it has not slept since it was created when
// its child fails: the plain-Asio hand-off is also measured with a fresh thread whose job runs
// that long first.
constexpr std::chrono::microseconds warm_up_like{120};

samples run_trials(std::size_t trials, std::size_t warmup, warden::capture capture) {
    asio::io_context io;
    samples out;
    for (std::size_t i = 0; i < warmup + trials; ++i) {
        // Alternated, so all kinds see the same machine load, with the three thread trials
        // in turn right after the coroutine trial: where the kernel runs a woken thread
        // depends on what ran just before on each CPU (a defaults trial ends with the
        // symbolising thread's log line while this thread waits for it), so each must follow
        // it as often.
        const double c = coroutine_trial(io, capture);
        trial_times t;
        trial_times r;
        trial_times b;
        for (std::size_t k = 0; k < 3; ++k) {
            switch ((i + k) % 3) {
            case 0:
                t = thread_trial(io, capture);
                break;
            case 1:
                r = raw_thread_trial(io);
                break;
            default:
                b = raw_thread_trial(io, warm_up_like);
                break;
            }
        }
        if (i >= warmup) {
            out.coroutine.push_back(c);
            out.thread.add(t);
            out.raw_thread.add(r);
            out.raw_busy_thread.add(b);
        }
    }
    return out;
}

// The coroutine trial again and again, nothing else between, optionally with the parent's
// thread asleep for a while before each: against the interleaved rows, where it follows the
// thread trials (fresh pool threads, their warm-up throws and, with the defaults, their
// symbolised log lines, which each supervisor's end waits for asleep). Info: it tells what the
// defaults cost from what the trials before them leave on the CPUs.
std::vector<double> coroutine_trials_in_a_row(std::size_t trials, std::size_t warmup,
                                              warden::capture capture,
                                              std::chrono::microseconds asleep_before = {}) {
    asio::io_context io;
    std::vector<double> out;
    for (std::size_t i = 0; i < warmup + trials; ++i) {
        if (asleep_before.count() > 0)
            std::this_thread::sleep_for(asleep_before);
        const double c = coroutine_trial(io, capture);
        if (i >= warmup)
            out.push_back(c);
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

// The thread child's trials split by where the parent ran, each against the plain-Asio
// hand-off's trials of the same placement in the same run, those whose fresh thread ran as long
// as warden's warm-up before the failure. Only the same-CPU row is a target: the other-CPU
// trials carry the host's wake of an idle vCPU (the floor row), which the plain-Asio hand-off
// pays as well.
void emit_by_placement(const std::string& what, const hand_offs& warden_side, const hand_offs& raw,
                       const std::string& note) {
    const auto p50_row = [&](const std::string& where, const std::vector<double>& w,
                             const std::vector<double>& r, bool target) {
        const std::optional<double> baseline =
            r.empty() ? std::nullopt : std::optional(percentile(r, 50));
        const std::string count = fmt::format("{} of {} trials", w.size(), warden_side.all.size());
        if (w.empty()) {
            emit({what + ", parent woke " + where + ", p50", 0, baseline, "us",
                  target ? "< 20 us" : "-", target ? verdict::not_run : verdict::info,
                  note + "; " + count});
            return;
        }
        const double p50 = percentile(w, 50);
        emit({what + ", parent woke " + where + ", p50", p50, baseline, "us",
              target ? "< 20 us" : "-", target ? check(p50 < 20) : verdict::info,
              note + "; " + count +
                  "; baseline: the plain-Asio hand-off's trials placed alike, its job busy " +
                  std::to_string(warm_up_like.count()) + " us first"});
    };
    p50_row("on the child's CPU", warden_side.same_cpu, raw.same_cpu, true);
    p50_row("on the other CPU", warden_side.other_cpu, raw.other_cpu, false);
    emit({what + ", trials whose parent woke on the other CPU", warden_side.other_cpu_share(),
          raw.other_cpu_share(), "%", "-", verdict::info,
          note + "; baseline: the same share of the plain-Asio hand-off's trials, its job busy " +
              std::to_string(warm_up_like.count()) + " us first"});
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
    emit_percentiles("failure -> join: thread child", quiet.thread.all, true, quiet_note);
    emit_by_placement("failure -> join: thread child", quiet.thread, quiet.raw_thread, quiet_note);
    const std::string raw_note = "alternating with warden's trials: a fresh thread_pool(1) "
                                 "job catches, posts the exception_ptr to the parent's "
                                 "io_context and cancels the timer the parent awaits";
    emit_percentiles("failure -> parent, no warden: plain Asio hand-off from a pool thread (info)",
                     quiet.raw_thread.all, false, fmt::format("{} trials, {}", trials, raw_note));
    const std::size_t in_a_row = smoke ? 20 : 2'000;
    const std::size_t in_a_row_warmup = smoke ? 2 : 100;
    const auto in_a_row_note = [in_a_row](const std::string& what) {
        return fmt::format("{} coroutine trials one after another, nothing between; {}", in_a_row,
                           what);
    };
    emit_percentiles(
        "failure -> join: coroutine child, trials in a row (info)",
        coroutine_trials_in_a_row(in_a_row, in_a_row_warmup, warden::capture::location), false,
        in_a_row_note("capture::location; logger \"warden\" off"));
    constexpr std::chrono::microseconds asleep{300};
    emit_percentiles(
        fmt::format("failure -> join: coroutine child, trials in a row, the parent's thread "
                    "asleep {} us before each (info)",
                    asleep.count()),
        coroutine_trials_in_a_row(in_a_row, in_a_row_warmup, warden::capture::location, asleep),
        false,
        in_a_row_note(fmt::format("capture::location; logger \"warden\" off; the thread sleeps "
                                  "{} us before each, as a defaults trial's thread does while the "
                                  "supervisor before it waits for its log line",
                                  asleep.count())));
    emit_percentiles(
        "failure -> join: coroutine child, trials in a row, capture::stacktrace, logger off (info)",
        coroutine_trials_in_a_row(in_a_row, in_a_row_warmup, warden::capture::stacktrace), false,
        in_a_row_note("the defaults but for the log line: capture::stacktrace, logger \"warden\" "
                      "off"));

    logger.set_level(default_level);
    const long rss_before = resident_mb();
    const auto defaults = run_trials(default_trials, smoke ? 2 : 100, warden::capture::stacktrace);
    const std::string defaults_note = fmt::format(
        "{} trials; defaults: capture::stacktrace, logger \"warden\" at {} (stderr); "
        "RSS {} -> {} MB",
        default_trials, spdlog::level::to_string_view(default_level), rss_before, resident_mb());
    emit_percentiles("failure -> join, defaults: coroutine child", defaults.coroutine, true,
                     defaults_note);
    emit_percentiles(
        "failure -> join, defaults: coroutine child, trials in a row (info)",
        coroutine_trials_in_a_row(in_a_row, in_a_row_warmup, warden::capture::stacktrace), false,
        in_a_row_note("defaults as above: each supervisor's end waits, asleep, for its failure's "
                      "log line"));
    emit_percentiles("failure -> join, defaults: thread child", defaults.thread.all, true,
                     defaults_note);
    emit_by_placement("failure -> join, defaults: thread child", defaults.thread,
                      defaults.raw_busy_thread, defaults_note);
    emit_percentiles(
        "failure -> parent, no warden, beside the defaults: plain Asio hand-off (info)",
        defaults.raw_thread.all, false, fmt::format("{} trials, {}", default_trials, raw_note));
    const std::string busy_note =
        fmt::format("{} trials, {}; the job spins {} us before it throws, as long as a fresh "
                    "pool thread's warm-up runs before warden's child",
                    default_trials, raw_note, warm_up_like.count());
    const std::string busy = "failure -> parent, no warden, beside the defaults: plain Asio "
                             "hand-off, the job busy 120 us first";
    emit_percentiles(busy + " (info)", defaults.raw_busy_thread.all, false, busy_note);
    emit({busy + ": trials whose parent woke on the other CPU",
          defaults.raw_busy_thread.other_cpu_share(), std::nullopt, "%", "-", verdict::info,
          busy_note});

    const auto wakes = cross_cpu_wakes(smoke ? 200 : 5'000);
    if (!wakes.empty()) {
        const std::string wake_note =
            fmt::format("{} trials: a futex wake (std::atomic::notify_one) of a thread asleep "
                        "on the other CPU, both pinned, the sleeper's CPU idle for 20 us first",
                        wakes.size());
        emit_percentiles("floor, no Asio, no warden: wake a thread asleep on the other CPU", wakes,
                         false, wake_note);
    }
    return 0;
}
