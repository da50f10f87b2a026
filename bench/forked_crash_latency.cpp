// Figure: a forked child dies of SIGSEGV -> the parent's wait() throws process_crashed:
// p50 and p99 over 200 trials. Target: p99 < 5 ms.
//
// The child writes steady_clock::now() (CLOCK_MONOTONIC, one clock for both processes) into
// a shared anonymous mapping, then stores through a null pointer; the parent stamps the
// first statement of its catch block. Fresh default-constructed supervisor per trial, so the
// crash handler's report travels the whole way: crash handler in the child, reaping, the
// parent's report, the wake-up of wait(). Target rows: capture::location, logger "warden"
// off; and the defaults (capture::stacktrace, logger on), the first crash of a process
// included.
//
// The trials run in batches of 25, each in a new copy of this program (`--batch`), and the
// first crash of each batch is a warm-up, reported on a row of its own: it is the first
// symbolisation of the process, which loads the debug information (warden's one symbolising
// thread keeps it for the process: ~20 MB, once). Before that thread, each supervisor's I/O
// thread built its own (Boost.Stacktrace keeps libbacktrace's state thread_local), ~200 ms
// and ~20 MB per supervisor; the RSS growth per batch is in the note. For comparison, the
// same crash on long-lived supervisors (one I/O thread for 20 reports) is measured first.

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include "common.hpp"

using namespace warden_bench;

namespace {

// volatile: the compiler may not prove the store faults and turn it into a trap (SIGILL).
int* volatile null_target = nullptr;

struct stamp {
    std::atomic<bench_clock::rep> crashed_at{0};
};

long resident_kb() {
    long pages = 0, resident = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        std::fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

stamp* shared_stamp() {
    void* memory =
        mmap(nullptr, sizeof(stamp), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED)
        std::abort();
    return new (memory) stamp;
}

// The child stamps the time, then stores through a null pointer.
void spawn_crashing_child(warden::supervisor& sup, stamp* s) {
    s->crashed_at.store(0);
    sup.spawn_forked([s] {
        s->crashed_at.store(bench_clock::now().time_since_epoch().count());
        *null_target = 1;
    });
}

// The latency in us, or a negative value if the parent did not see a SIGSEGV crash.
double trial(stamp* s, warden::capture capture) {
    warden::supervisor sup{{.capture = capture}};
    try {
        spawn_crashing_child(sup, s);
        sup.wait();
    } catch (const warden::process_crashed& e) {
        const auto caught = bench_clock::now();
        if (e.signal() != SIGSEGV)
            return -1;
        const bench_clock::time_point crashed{bench_clock::duration{s->crashed_at.load()}};
        return microseconds(caught - crashed);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench: forked child: unexpected %s\n", e.what());
        return -1;
    }
    return -1;
}

// The same crash, on one long-lived supervisor under policy::collect (wait() throws a
// failure_group once the crashed child is reaped), so every trial's report is built on the
// same I/O thread. The difference from trial() is what a fresh supervisor's threads cost.
double collect_trial(warden::supervisor& sup, stamp* s) {
    try {
        spawn_crashing_child(sup, s);
        sup.wait();
    } catch (const warden::failure_group& e) {
        const auto caught = bench_clock::now();
        // (The group holds only this crash: earlier ones were thrown by earlier waits.)
        if (e.reports().empty())
            return -1;
        const bench_clock::time_point crashed{bench_clock::duration{s->crashed_at.load()}};
        return microseconds(caught - crashed);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench: forked child: unexpected %s\n", e.what());
        return -1;
    }
    return -1;
}

std::vector<double> run_trials(stamp* s, std::size_t trials, std::size_t warmup,
                               warden::capture capture, double& first) {
    std::vector<double> out;
    for (std::size_t i = 0; i < warmup + trials; ++i) {
        const double t = trial(s, capture);
        if (t < 0)
            return {};
        if (i == 0)
            first = t;
        if (i >= warmup)
            out.push_back(t);
    }
    return out;
}

// Runs `trials` fresh-supervisor trials in a new copy of this program (see the top comment),
// and returns their latencies plus that process's RSS growth in MB and the latency of its
// first (warm-up) crash. Empty when they failed.
std::vector<double> run_batch(std::size_t trials, std::size_t warmup, const char* mode, bool log_on,
                              long& rss_growth_mb, std::vector<double>& first_crashes) {
    const std::string command = fmt::format("'/proc/{}/exe' --batch {} {} {} {}", getpid(), trials,
                                            warmup, mode, log_on ? "on" : "off");
    std::vector<double> out;
    std::FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr)
        return out;
    char line[128];
    while (std::fgets(line, sizeof line, pipe) != nullptr) {
        if (std::strncmp(line, "rss ", 4) == 0)
            rss_growth_mb = std::max(rss_growth_mb, std::atol(line + 4));
        else if (std::strncmp(line, "first ", 6) == 0)
            first_crashes.push_back(std::atof(line + 6));
        else
            out.push_back(std::atof(line));
    }
    if (pclose(pipe) != 0 || out.size() != trials)
        out.clear();
    return out;
}

std::vector<double> run_batches(std::size_t trials, std::size_t batch, const char* mode,
                                bool log_on, long& rss_growth_mb,
                                std::vector<double>& first_crashes, std::size_t warmup = 1) {
    std::vector<double> all;
    for (std::size_t done = 0; done < trials; done += batch) {
        auto part = run_batch(std::min(batch, trials - done), warmup, mode, log_on, rss_growth_mb,
                              first_crashes);
        if (part.empty())
            return {};
        all.insert(all.end(), part.begin(), part.end());
    }
    return all;
}

// --batch TRIALS WARMUP location|stacktrace|reuse on|off: one batch, one latency per line, then
// "first <us>" (the first warm-up crash) and "rss <MB grown>".
int batch_main(char** argv) {
    const auto trials = static_cast<std::size_t>(std::atol(argv[2]));
    const auto warmup = static_cast<std::size_t>(std::atol(argv[3]));
    const auto capture = std::strcmp(argv[4], "stacktrace") == 0 ? warden::capture::stacktrace
                                                                 : warden::capture::location;
    auto& logger = warden_logger();
    if (std::strcmp(argv[5], "off") == 0)
        logger.set_level(spdlog::level::off);
    const long rss_before = resident_kb();
    std::vector<double> samples;
    double first = -1;
    if (std::strcmp(argv[4], "reuse") == 0) {
        // One supervisor under collect for the whole batch: its I/O thread builds every report.
        stamp* s = shared_stamp();
        warden::supervisor sup{
            {.policy = warden::policy::collect, .capture = warden::capture::location}};
        for (std::size_t i = 0; i < warmup + trials; ++i) {
            const double t = collect_trial(sup, s);
            if (t < 0)
                return 1;
            if (i == 0)
                first = t;
            if (i >= warmup)
                samples.push_back(t);
        }
    } else {
        samples = run_trials(shared_stamp(), trials, warmup, capture, first);
    }
    if (samples.empty())
        return 1;
    for (double t : samples)
        std::printf("%.3f\n", t);
    std::printf("first %.3f\n", first);
    std::printf("rss %ld\n", (resident_kb() - rss_before) / 1024);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 6 && std::strcmp(argv[1], "--batch") == 0)
        return batch_main(argv);
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t trials = smoke ? 10 : 200;
    // A p99 of 100 was the second slowest: one host hiccup in a run decided it (2.4-12 ms over
    // ten runs of the same code, bench/README.md).
    const std::size_t default_trials = smoke ? 3 : 300;
    constexpr std::size_t batch = 25;
    constexpr std::size_t defaults_batch = 5; // 60 first crashes among the 300

    // The same crash on a supervisor whose I/O thread has built a report before: batches of
    // 20 crashes on one supervisor under policy::collect, after one warm-up crash, each batch
    // in a fresh process (small, as the fresh-supervisor batches are at their start).
    long reuse_growth_mb = 0;
    std::vector<double> reuse_first;
    const auto reused = run_batches(trials, 20, "reuse", false, reuse_growth_mb, reuse_first);

    long rss_growth_mb = 0;
    std::vector<double> first_crashes;
    const auto quiet = run_batches(trials, batch, "location", false, rss_growth_mb, first_crashes);
    if (quiet.empty()) {
        emit({"forked child SIGSEGV -> parent's error, p99", 0, std::nullopt, "us", "< 5000 us",
              verdict::not_run, "spawn_forked threw or did not report process_crashed"});
        return 0;
    }
    const std::string note = fmt::format(
        "{} trials, a fresh supervisor each, in batches of {} per process; capture::location; "
        "logger \"warden\" off; parent blocked in wait(); RSS grew by up to {} MB per batch",
        trials, batch, rss_growth_mb);
    emit({"forked child SIGSEGV -> parent's error, p50", percentile(quiet, 50), std::nullopt, "us",
          "-", verdict::info, note});
    const double p99 = percentile(quiet, 99);
    emit({"forked child SIGSEGV -> parent's error, p99", p99, std::nullopt, "us", "< 5000 us",
          check(p99 < 5000), note});
    if (!first_crashes.empty())
        emit({"forked child SIGSEGV -> parent's error, first crash of a process, p50",
              percentile(first_crashes, 50), std::nullopt, "us", "-", verdict::info,
              fmt::format("the warm-up crash of each of the {} batches above: the process's first "
                          "symbolisation loads the debug information; max {:.0f} us",
                          first_crashes.size(), percentile(first_crashes, 100))});
    if (!reused.empty())
        emit({"forked child SIGSEGV -> error, long-lived supervisors (collect), p99",
              percentile(reused, 99), std::nullopt, "us", "-", verdict::info,
              fmt::format("{} trials, 20 per supervisor (one per process) after one warm-up "
                          "crash, so one I/O thread builds 21 reports; p50 {:.0f} us; RSS grew "
                          "by up to {} MB per batch",
                          reused.size(), percentile(reused, 50), reuse_growth_mb)});

    // With the defaults, and no warm-up: the first crash of each process is one of the trials
    // (the crash stack and the report are symbolised when first read, not on the way here).
    long defaults_growth_mb = 0;
    std::vector<double> defaults_first;
    const auto defaults = run_batches(default_trials, defaults_batch, "stacktrace", true,
                                      defaults_growth_mb, defaults_first, 0);
    if (!defaults.empty()) {
        const std::string defaults_note = fmt::format(
            "{} trials in batches of {} per process, the first crash of each process included; "
            "capture::stacktrace; logger \"warden\" at its default level (stderr)",
            default_trials, defaults_batch);
        const double p99 = percentile(defaults, 99);
        emit({"forked child SIGSEGV -> parent's error, defaults, p99", p99, std::nullopt, "us",
              "< 5000 us", check(p99 < 5000), defaults_note});
        const double first_p99 = percentile(defaults_first, 99);
        emit({"forked child SIGSEGV -> parent's error, defaults, first crash of a process, p99",
              first_p99, std::nullopt, "us", "< 5000 us", check(first_p99 < 5000),
              fmt::format("the first crash of each of the {} processes above",
                          defaults_first.size())});
    }
    return 0;
}
