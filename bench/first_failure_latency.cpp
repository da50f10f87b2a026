// Figure: the first failure of a fresh process, with every default (`warden::supervisor sup;`:
// its own I/O thread, capture::stacktrace, the "warden" logger at its default level). A
// thread child throws; measured from just before the throw to
//   - the first statement of the parent's catch block around `sup.wait()` (parent woken), and
//   - the moment a sibling thread child, blocked on its stop_token, sees the stop (sibling
//     cancelled).
// Each trial runs in a new copy of this program (`--trial`, exec'd: a fork would inherit the
// parent's state and, being a fork, symbolise on its own threads), so the report's symbols (the
// first load of the debug information, ~100 ms) are still to be made when the failure happens: the
// figure shows whether anything on the way to the parent or the sibling waits for them. Targets:
// parent woken p99 < 1 ms; sibling cancelled p99 < 1 ms (the same path, after the wake).
//
// For information: how long the first report_for takes after the supervisor is gone (the
// failure's log line, written on the symbolising thread before the destructor returned, has
// loaded the debug information by then).

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <thread>

#include <warden/supervisor.hpp>

#include "common.hpp"

using namespace warden_bench;

namespace {

struct trial_result {
    double woken_us = -1;
    double sibling_us = -1;
    double report_us = -1;
};

trial_result first_failure_trial() {
    trial_result out;
    std::atomic<bench_clock::rep> thrown_at{0};
    std::atomic<bench_clock::rep> sibling_saw_stop{0};
    std::latch sibling_waiting(1);
    std::exception_ptr failure;
    bench_clock::time_point caught;
    {
        warden::supervisor sup;
        sup.spawn(
            [&](std::stop_token stop) {
                std::mutex m;
                std::condition_variable_any cv;
                std::unique_lock lock(m);
                sibling_waiting.count_down();
                cv.wait(lock, stop, [] { return false; });
                sibling_saw_stop.store(bench_clock::now().time_since_epoch().count());
            },
            {.name = "sibling"});
        sup.spawn(
            [&] {
                sibling_waiting.wait();
                thrown_at.store(bench_clock::now().time_since_epoch().count());
                throw std::runtime_error("first failure of the process");
            },
            {.name = "thrower"});
        try {
            sup.wait();
        } catch (const std::runtime_error&) {
            caught = bench_clock::now();
            failure = std::current_exception();
        }
    } // the destructor waits for the sibling, and for the failure's log line
    if (!failure)
        return out;
    const bench_clock::time_point thrown{bench_clock::duration{thrown_at.load()}};
    out.woken_us = microseconds(caught - thrown);
    const bench_clock::time_point stopped{bench_clock::duration{sibling_saw_stop.load()}};
    out.sibling_us = microseconds(stopped - thrown);
    const auto read_from = bench_clock::now();
    const auto* report = warden::report_for(failure);
    if (report == nullptr || report->origin.stacktrace.empty())
        return trial_result{};
    out.report_us = microseconds(bench_clock::now() - read_from);
    return out;
}

// The same story without warden, the baseline: two std::threads; the one that throws
// catches, asks the sibling to stop, and hands the exception to the parent, which waits on a
// condition variable until the sibling has stopped too (as wait() does under fail_fast).
trial_result raw_trial() {
    trial_result out;
    std::atomic<bench_clock::rep> thrown_at{0};
    std::atomic<bench_clock::rep> sibling_saw_stop{0};
    std::latch sibling_waiting(1);
    std::mutex m;
    std::condition_variable done_cv;
    std::exception_ptr failure;
    bool sibling_done = false;
    bench_clock::time_point caught;
    std::stop_source stop_sibling;
    {
        std::thread sibling([&, stop = stop_sibling.get_token()] {
            std::mutex own;
            std::condition_variable_any cv;
            std::unique_lock lock(own);
            sibling_waiting.count_down();
            cv.wait(lock, stop, [] { return false; });
            sibling_saw_stop.store(bench_clock::now().time_since_epoch().count());
            {
                std::lock_guard l(m);
                sibling_done = true;
            }
            done_cv.notify_all();
        });
        std::thread thrower([&] {
            sibling_waiting.wait();
            try {
                thrown_at.store(bench_clock::now().time_since_epoch().count());
                throw std::runtime_error("first failure of the process");
            } catch (...) {
                stop_sibling.request_stop();
                std::lock_guard l(m);
                failure = std::current_exception();
            }
            done_cv.notify_all();
        });
        {
            std::unique_lock l(m);
            done_cv.wait(l, [&] { return failure && sibling_done; });
        }
        try {
            std::rethrow_exception(failure);
        } catch (const std::runtime_error&) {
            caught = bench_clock::now();
        }
        thrower.join();
        sibling.join();
    }
    const bench_clock::time_point thrown{bench_clock::duration{thrown_at.load()}};
    out.woken_us = microseconds(caught - thrown);
    const bench_clock::time_point stopped{bench_clock::duration{sibling_saw_stop.load()}};
    out.sibling_us = microseconds(stopped - thrown);
    out.report_us = 0;
    return out;
}

// One trial in a new copy of this program; a negative woken_us when it failed.
trial_result run_trial_process(bool raw) {
    trial_result r;
    const std::string command =
        fmt::format("'/proc/{}/exe' {}", getpid(), raw ? "--raw-trial" : "--trial");
    std::FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr)
        return r;
    if (std::fscanf(pipe, "%lf %lf %lf", &r.woken_us, &r.sibling_us, &r.report_us) != 3)
        r.woken_us = -1;
    if (pclose(pipe) != 0)
        r.woken_us = -1;
    return r;
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 2 &&
        (std::strcmp(argv[1], "--trial") == 0 || std::strcmp(argv[1], "--raw-trial") == 0)) {
        const auto r = std::strcmp(argv[1], "--trial") == 0 ? first_failure_trial() : raw_trial();
        std::printf("%.3f %.3f %.3f\n", r.woken_us, r.sibling_us, r.report_us);
        return r.woken_us < 0 ? 1 : 0;
    }
    const bool smoke = take_smoke_flag(argc, argv);
    const int trials = smoke ? 3 : 30;
    // The failure's report is logged to stderr (bench/run keeps it in logs/).
    std::vector<double> woken, sibling, report, raw_woken, raw_sibling;
    for (int i = 0; i < trials; ++i) {
        // Alternated, so both see the same machine.
        const auto raw = run_trial_process(true);
        raw_woken.push_back(raw.woken_us);
        raw_sibling.push_back(raw.sibling_us);
        const auto r = run_trial_process(false);
        if (r.woken_us < 0 || raw.woken_us < 0) {
            emit({"first failure of a process -> parent woken, defaults, p99", 0, std::nullopt,
                  "us", "< 1000 us", verdict::not_run, "the trial did not see its failure"});
            return 1;
        }
        woken.push_back(r.woken_us);
        sibling.push_back(r.sibling_us);
        report.push_back(r.report_us);
    }
    const std::string note = fmt::format(
        "{} new processes (exec'd), one trial each; warden::supervisor sup; (defaults); a "
        "thread child throws while the parent is blocked in sup.wait()",
        trials);
    const std::string raw_note = "baseline: the same story in the same fresh processes without "
                                 "warden (two std::threads, a stop request, a condition variable)";
    emit({"first failure of a process -> parent woken, defaults, p50", percentile(woken, 50),
          percentile(raw_woken, 50), "us", "-", verdict::info, note + "; " + raw_note});
    const double woken_p99 = percentile(woken, 99);
    emit({"first failure of a process -> parent woken, defaults, p99", woken_p99,
          percentile(raw_woken, 99), "us", "< 1000 us", check(woken_p99 < 1000),
          note + "; " + raw_note});
    const double sibling_p99 = percentile(sibling, 99);
    emit({"first failure of a process -> sibling cancelled, defaults, p99", sibling_p99,
          percentile(raw_sibling, 99), "us", "< 1000 us", check(sibling_p99 < 1000),
          note + "; the sibling waits on its stop_token; " + raw_note});
    emit({"first failure of a process: the first report_for after the supervisor's end, p50 (info)",
          percentile(report, 50), std::nullopt, "us", "-", verdict::info,
          note + "; the report's text is written by its first reader"});
    return 0;
}
