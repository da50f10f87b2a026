// Figure: spawn + wait of /bin/true, 1000 times in sequence, warden's spawn_process against
// posix_spawn + waitpid. Target: <= 1.15x.
//
// warden: one default-constructed supervisor (its I/O thread watches the process, the caller
// blocks in sup.wait() after each spawn), created inside the timed region; capture::location.
// Baseline: posix_spawn with no file actions and the inherited environment, then waitpid.
// Info: the least that watching a child from an I/O thread costs without warden, written in
// plain Asio: the child's stdout and stderr to a pipe, an io_context on a thread of its own
// that reads the pipe to its end and waits on a pidfd, reaps the child there and wakes the
// caller, who waits on a condition variable. Warden does that (a supervisor sees an exit
// whether or not anyone waits, and keeps the output for the report) and more: the launch
// checks, its own process group, the descendant sweep, the record.

#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include "common.hpp"

namespace asio = boost::asio;
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

void raw_watched_by_io_thread(std::size_t n) {
    asio::io_context io;
    auto work = asio::make_work_guard(io);
    std::thread io_thread([&io] { io.run(); });
    char program[] = "/bin/true";
    char* args[] = {program, nullptr};
    std::array<char, 16 * 1024> buffer;
    for (std::size_t i = 0; i < n; ++i) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            std::abort();
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
        pid_t pid = 0;
        if (posix_spawn(&pid, program, &actions, nullptr, args, environ) != 0)
            std::abort();
        posix_spawn_file_actions_destroy(&actions);
        close(fds[1]);
        const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
        if (pidfd < 0)
            std::abort();
        asio::posix::stream_descriptor output(io, fds[0]);
        asio::posix::stream_descriptor exit(io, pidfd);
        std::mutex mutex;
        std::condition_variable cv;
        int ended = 0; // the output's end, the exit: both, as a supervisor waits for both
        auto end_one = [&] {
            {
                std::lock_guard lock(mutex);
                ++ended;
            }
            cv.notify_one();
        };
        std::function<void(const boost::system::error_code&, std::size_t)> on_read =
            [&](const boost::system::error_code& ec, std::size_t) {
                if (ec)
                    end_one();
                else
                    output.async_read_some(asio::buffer(buffer), on_read);
            };
        output.async_read_some(asio::buffer(buffer), on_read);
        exit.async_wait(asio::posix::descriptor_base::wait_read,
                        [&](const boost::system::error_code&) {
                            int status = 0;
                            if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
                                WEXITSTATUS(status) != 0)
                                std::abort();
                            end_one();
                        });
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return ended == 2; });
    }
    work.reset();
    io_thread.join();
}

void warden_spawn_process(std::size_t n) {
    warden::supervisor sup{{.capture = warden::capture::location}};
    for (std::size_t i = 0; i < n; ++i) {
        sup.spawn_process({.argv = {"/bin/true"}});
        sup.wait(); // the only child: waits for this process
    }
}

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
    add("raw_watched_by_io_thread", [n] { raw_watched_by_io_thread(n); });
    add("warden_spawn_process", [n] { warden_spawn_process(n); });
    auto medians = run_benchmarks(argc, argv);
    const double raw = median_of(medians, "raw_posix_spawn");
    const double w = median_of(medians, "warden_spawn_process");
    emit({figure, w, raw, "ms", "<= 1.15x", check(w <= 1.15 * raw),
          fmt::format("median of {} interleaved repetitions", repetitions)});
    const double watched = median_of(medians, "raw_watched_by_io_thread");
    emit({"spawn_process: raw, the output and the exit seen by an I/O thread that reaps and wakes "
          "the caller (info)",
          watched, raw, "ms", "-", verdict::info,
          "posix_spawn, stdout/stderr to a pipe, an Asio io_context on its own thread reads it "
          "and waits on a pidfd, waitpid there, a condition variable to the caller: the floor "
          "of a supervisor whose I/O thread watches its processes"});
    emit({"spawn_process: warden against that floor (info)", w, watched, "ms", "-", verdict::info,
          "what warden adds to the floor: launch checks, process group, descendant sweep, "
          "record"});
    emit({"spawn_process: same, CPU time of the parent process (info)",
          median_of(medians, "cpu:warden_spawn_process"), median_of(medians, "cpu:raw_posix_spawn"),
          "ms", "-", verdict::info, "all threads of the parent (warden: caller, I/O thread)"});
    return 0;
}
