// Figure: spawn + wait of /bin/true, 1000 times in sequence, warden's spawn_process against
// posix_spawn + waitpid. Target: <= 1.15x.
//
// warden: one default-constructed supervisor (its I/O thread watches the process, the caller
// blocks in sup.wait() after each spawn), created inside the timed region; capture::location.
// Baseline: posix_spawn with no file actions and the inherited environment, then waitpid.

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include "common.hpp"

using namespace warden_bench;

extern char** environ;

namespace {

void raw_posix_spawn(std::size_t n) {
    char program[] = "/bin/true";
    char* args[] = {program, nullptr};
    for (std::size_t i = 0; i < n; ++i) {
        pid_t pid = 0;
        if (posix_spawn(&pid, program, nullptr, nullptr, args, environ) != 0)
            std::abort();
        int status = 0;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            std::abort();
    }
}

void warden_spawn_process(std::size_t n) {
    warden::supervisor sup{{.capture = warden::capture::location}};
    for (std::size_t i = 0; i < n; ++i) {
        sup.spawn_process({.argv = {"/bin/true"}});
        sup.wait(); // the only child: waits for this process
    }
}

// Whether spawn_process works yet (another engineer implements it).
bool spawn_process_works() {
    try {
        warden_spawn_process(1);
        return true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench: spawn_process does not work yet: %s\n", e.what());
        return false;
    }
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t n = smoke ? 20 : 1000;
    const int repetitions = smoke ? 2 : 7;
    const std::string figure = fmt::format("spawn_process: spawn + wait of /bin/true x{}", n);
    if (!spawn_process_works()) {
        emit({figure, 0, std::nullopt, "ms", "<= 1.15x", verdict::not_run,
              "spawn_process threw (not implemented yet?)"});
        return 0;
    }
    auto add = [&](const char* name, auto fn) {
        benchmark::RegisterBenchmark(name,
                                     [fn](benchmark::State& state) {
                                         for (auto _ : state)
                                             fn();
                                     })
            ->Iterations(1)
            ->Repetitions(repetitions)
            ->DisplayAggregatesOnly()
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    };
    add("raw_posix_spawn", [n] { raw_posix_spawn(n); });
    add("warden_spawn_process", [n] { warden_spawn_process(n); });
    auto medians = run_benchmarks(argc, argv);
    const double raw = median_of(medians, "raw_posix_spawn");
    const double w = median_of(medians, "warden_spawn_process");
    emit({figure, w, raw, "ms", "<= 1.15x", check(w <= 1.15 * raw),
          fmt::format("median of {} interleaved repetitions", repetitions)});
    emit({"spawn_process: same, CPU time of the parent process (info)",
          median_of(medians, "cpu:warden_spawn_process"), median_of(medians, "cpu:raw_posix_spawn"),
          "ms", "-", verdict::info, "all threads of the parent (warden: caller, I/O thread)"});
    return 0;
}
