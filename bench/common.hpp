#pragma once

// What every figure shares: the --smoke switch, the result rows bench/run collects, the
// latency statistics, the "warden" logger switch, and a Google Benchmark driver that
// interleaves the warden and baseline repetitions and reports their medians (wall-clock time
// under "<name>", process CPU time under "cpu:<name>").
//
// Row protocol (stdout): one line per figure row,
//   @row<TAB>figure<TAB>warden<TAB>baseline<TAB>ratio<TAB>target<TAB>verdict
// (values already formatted with their unit; "-" where there is none), followed by the
// same row as one JSON object on a line starting with "@json ". Everything else a bench
// prints is for people.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace warden_bench {

using bench_clock = std::chrono::steady_clock;

// Removes --smoke from argv (so Google Benchmark does not see it) and says if it was there.
inline bool take_smoke_flag(int& argc, char** argv) {
    bool smoke = false;
    int out = 1;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--smoke") == 0)
            smoke = true;
        else
            argv[out++] = argv[i];
    }
    argc = out;
    argv[argc] = nullptr;
    return smoke;
}

enum class verdict { pass, fail, info, not_run };

inline std::string_view to_string(verdict v) {
    switch (v) {
    case verdict::pass:
        return "pass";
    case verdict::fail:
        return "FAIL";
    case verdict::info:
        return "info";
    case verdict::not_run:
        return "not run";
    }
    return "?";
}

inline verdict check(bool ok) {
    return ok ? verdict::pass : verdict::fail;
}

struct row {
    std::string figure;
    double warden = 0;
    std::optional<double> baseline;
    std::string unit; // of warden and baseline
    std::string target;
    verdict result = verdict::info;
    std::string note; // how it was measured (JSON only)
};

inline std::string json_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\')
            out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

inline std::string format_value(double v, std::string_view unit) {
    if (unit == "B")
        return fmt::format("{:.0f} B", v);
    return fmt::format("{:.{}f} {}", v, v < 10 ? 2 : (v < 100 ? 1 : 0), unit);
}

inline void emit(const row& r) {
    // Strings first: g++ 12 sees a maybe-uninitialized optional<double> through fmt.
    const bool has_ratio = r.baseline.has_value() && r.baseline.value() > 0;
    const double ratio = has_ratio ? r.warden / r.baseline.value() : 0.0;
    const std::string baseline_text =
        r.baseline.has_value() ? format_value(r.baseline.value(), r.unit) : "-";
    const std::string baseline_json =
        r.baseline.has_value() ? fmt::format("{:.6g}", r.baseline.value()) : "null";
    const std::string ratio_text = has_ratio ? fmt::format("{:.2f}x", ratio) : "-";
    const std::string ratio_json = has_ratio ? fmt::format("{:.4f}", ratio) : "null";
    const std::string result(to_string(r.result));
    std::printf("@row\t%s\t%s\t%s\t%s\t%s\t%s\n", r.figure.c_str(),
                format_value(r.warden, r.unit).c_str(), baseline_text.c_str(), ratio_text.c_str(),
                r.target.c_str(), result.c_str());
    std::printf("@json {\"figure\": \"%s\", \"warden\": %.6g, \"baseline\": %s, \"unit\": \"%s\", "
                "\"ratio\": %s, \"target\": \"%s\", \"result\": \"%s\", \"note\": \"%s\"}\n",
                json_escape(r.figure).c_str(), r.warden, baseline_json.c_str(),
                json_escape(r.unit).c_str(), ratio_json.c_str(), json_escape(r.target).c_str(),
                result.c_str(), json_escape(r.note).c_str());
    std::fflush(stdout);
}

// Nearest-rank percentile of `samples` (p in [0, 100]).
inline double percentile(std::vector<double> samples, double p) {
    if (samples.empty())
        return 0;
    std::sort(samples.begin(), samples.end());
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(samples.size()));
    return samples[std::min(rank, samples.size() - 1)];
}

inline double microseconds(bench_clock::duration d) {
    return std::chrono::duration<double, std::micro>(d).count();
}

// Resident set size of this process, in MB (0 if /proc is not there).
inline long resident_mb() {
    long pages = 0;
    long resident = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        std::fclose(f);
    }
    return resident * 4096 / (1024 * 1024);
}

// warden logs through the spdlog logger "warden", creating it (stderr, colour) on first use
// unless one is registered already. Registering the same kind of logger here, before warden
// runs, lets a bench switch failure logging on and off around its trials.
inline spdlog::logger& warden_logger() {
    static auto logger = [] {
        if (auto existing = spdlog::get("warden"))
            return existing;
        return spdlog::stderr_color_mt("warden");
    }();
    return *logger;
}

// Runs fn() once in a freshly forked copy of this process and returns what it returned (a
// trivially copyable value, sent back through a pipe). The caller must have no threads of
// its own (fork copies only this one).
template <class Fn>
auto run_in_fresh_process(Fn&& fn) {
    using result = decltype(fn());
    static_assert(std::is_trivially_copyable_v<result>);
    int fds[2];
    if (::pipe(fds) != 0)
        std::abort();
    const pid_t pid = ::fork();
    if (pid < 0)
        std::abort();
    if (pid == 0) {
        ::close(fds[0]);
        const result r = fn();
        const bool written = ::write(fds[1], &r, sizeof r) == static_cast<ssize_t>(sizeof r);
        std::_Exit(written ? 0 : 1);
    }
    ::close(fds[1]);
    result r{};
    const bool read_ok = ::read(fds[0], &r, sizeof r) == static_cast<ssize_t>(sizeof r);
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!read_ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "bench: a repetition failed (status %d)\n", status);
        std::abort();
    }
    return r;
}

// Runs fn() once in a freshly forked copy of this process and returns its wall-clock time in
// ms. 100k children leave glibc's heap in a state that makes the next 100k several times
// faster or slower depending on what ran before (measured: the same loop takes 36 to 95 ms
// by repetition index in one process, 82 to 95 ms when each repetition has a fresh process),
// so each repetition of a throughput figure starts from the same heap, for warden and
// baseline alike.
template <class Fn>
double run_in_fresh_process_ms(Fn&& fn) {
    return run_in_fresh_process([&fn] {
        const auto start = bench_clock::now();
        fn();
        return std::chrono::duration<double, std::milli>(bench_clock::now() - start).count();
    });
}

// Registers `fn` as a Google Benchmark whose every repetition is one run of the whole workload
// in a fresh process (run_in_fresh_process_ms), reported as manual time in ms.
template <class Fn>
void add_fresh_process_benchmark(const char* name, int repetitions, Fn fn) {
    benchmark::RegisterBenchmark(name,
                                 [fn](benchmark::State& state) {
                                     for (auto _ : state)
                                         state.SetIterationTime(run_in_fresh_process_ms(fn) /
                                                                1000.0);
                                 })
        ->Iterations(1)
        ->Repetitions(repetitions)
        ->DisplayAggregatesOnly()
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
}

// Google Benchmark with the defaults these figures want, overridable from the command line:
// every repetition is one timed iteration of the whole workload, repetitions of warden and
// baseline are shuffled together (--benchmark_enable_random_interleaving), and the median
// of each is returned by benchmark name (in ms).
class median_collector : public benchmark::ConsoleReporter {
  public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& run : runs)
            if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
                medians_[run.run_name.function_name] =
                    run.GetAdjustedRealTime() * unit_to_ms(run.time_unit);
                // Google Benchmark's CPU time is the whole process's (every thread).
                medians_["cpu:" + run.run_name.function_name] =
                    run.GetAdjustedCPUTime() * unit_to_ms(run.time_unit);
            }
        ConsoleReporter::ReportRuns(runs);
    }
    const std::map<std::string, double>& medians() const { return medians_; }

  private:
    static double unit_to_ms(benchmark::TimeUnit unit) {
        switch (unit) {
        case benchmark::kNanosecond:
            return 1e-6;
        case benchmark::kMicrosecond:
            return 1e-3;
        case benchmark::kMillisecond:
            return 1;
        case benchmark::kSecond:
            return 1e3;
        }
        return 1;
    }
    std::map<std::string, double> medians_;
};

inline std::map<std::string, double> run_benchmarks(int argc, char** argv) {
    std::vector<char*> args(argv, argv + argc);
    std::string interleave = "--benchmark_enable_random_interleaving=true";
    // Later flags win: the user's own flags come after these defaults.
    args.insert(args.begin() + 1, interleave.data());
    args.push_back(nullptr);
    int n = static_cast<int>(args.size()) - 1;
    benchmark::Initialize(&n, args.data());
    median_collector reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    return reporter.medians();
}

inline double median_of(const std::map<std::string, double>& medians, const std::string& name) {
    auto it = medians.find(name);
    if (it == medians.end()) {
        std::fprintf(stderr, "bench: no median for %s (filtered out?)\n", name.c_str());
        return 0;
    }
    return it->second;
}

// The tracking floors' table of running children (spawn_blocking, spawn_coroutine): threaded
// through the records (`previous`, `next`, and `self`, the table's reference), under a mutex,
// as a supervisor keeps one. Entered at the spawn, left when the child ends.
template <class Record>
class tracked_table {
  public:
    void enter(const std::shared_ptr<Record>& record) {
        std::lock_guard lock(mutex_);
        record->self = record;
        record->next = head_;
        if (head_ != nullptr)
            head_->previous = record.get();
        head_ = record.get();
    }
    // The table's reference, for the caller to drop after the unlock.
    std::shared_ptr<Record> leave(Record& record) {
        std::lock_guard lock(mutex_);
        (record.previous != nullptr ? record.previous->next : head_) = record.next;
        if (record.next != nullptr)
            record.next->previous = record.previous;
        return std::move(record.self);
    }

  private:
    std::mutex mutex_;
    Record* head_ = nullptr;
};

} // namespace warden_bench
