#pragma once

// What each framework's test program (doctest_program.cpp, gtest_program.cpp,
// catch2_program.cpp) does in its tests, written once: the programs only wire their
// framework's test macros to these. tests/test_frameworks.cpp runs every program case by case
// and checks the same things of each. Lines marked SPAWN_* are found by that test to check the
// reported file:line.

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <spdlog/async.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <warden/fixtures.hpp>
#include <warden/warden.hpp>

#include "captured_stderr.hpp"

namespace scenario {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// A thread that sleeps until the process ends (detached: nothing joins it).
inline void start_forever_thread(const char* name) {
    std::thread t([] {
        std::mutex m;
        std::condition_variable cv;
        std::unique_lock lock(m);
        cv.wait(lock, [] { return false; });
    });
    pthread_setname_np(t.native_handle(), name);
    t.detach();
}

// Running before any test starts: the leak check must not report it.
inline const bool thread_from_before_the_tests = [] {
    start_forever_thread("before tests");
    return true;
}();

inline int passes(warden::supervisor& sup) {
    return sup.spawn([] { return 1; }).get();
}

inline void child_fails_after_the_body_returned(warden::supervisor& sup) {
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); }, // SPAWN_A
              {.name = "installer"});
}

inline void body_waits_and_a_child_fails(warden::supervisor& sup) {
    sup.spawn([] { throw std::runtime_error("service died"); }, {.name = "service"}); // SPAWN_B
    sup.wait_until([] { return false; }, 60s);
}

inline void body_blocked_where_warden_cannot_reach(warden::supervisor& sup) {
    warden::fixtures::unobserved_grace = 200ms;
    sup.spawn([] { throw std::runtime_error("unobserved failure"); }, {.name = "lost"}); // SPAWN_C
    std::latch never(1);
    never.wait(); // nothing counts it down: the watchdog must end the binary
}

inline void a_child_outlives_the_join_deadline(warden::supervisor& sup) {
    warden::fixtures::join_deadline = 50ms;
    sup.spawn( // SPAWN_E
        [](std::stop_token token) {
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock lock(m);
            cv.wait(lock, token, [] { return false; });
        },
        {.name = "sleeper"});
}

inline asio::awaitable<void>
coroutine_body_is_cancelled_when_a_child_fails(warden::supervisor& sup) {
    // Not the watchdog's test: give slow (sanitizer) builds all the time they need.
    warden::fixtures::unobserved_grace = 60s;
    sup.spawn([]() -> asio::awaitable<void> { // SPAWN_D
        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
        co_await t.async_wait(asio::use_awaitable);
        throw std::runtime_error("coroutine child failed");
    });
    asio::steady_timer forever(co_await asio::this_coro::executor, 1h);
    try {
        co_await forever.async_wait(asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
        std::printf("the body's pending co_await ended: %s\n", e.code().message().c_str());
        throw;
    }
    std::printf("the body's pending co_await was not cancelled\n");
}

inline asio::awaitable<int> coroutine_body_passes(warden::supervisor& sup) {
    auto value = co_await sup.spawn([]() -> asio::awaitable<int> { co_return 5; });
    co_await sup.join();
    co_return value;
}

// A child process started with fork/exec, not warden, left running. It dies with this
// process (PR_SET_PDEATHSIG), so the test program leaves nothing behind. Returns once the
// child has exec'd (the close-on-exec pipe's end closes), so that its command line is sleep's.
inline void leaves_a_process_running() {
    const pid_t parent = ::getpid();
    int exec_done[2];
    if (::pipe2(exec_done, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe2 failed");
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent)
            ::_exit(0);
        ::execlp("sleep", "sleep", "1000", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(exec_done[1]);
    char byte;
    while (::read(exec_done[0], &byte, 1) < 0 && errno == EINTR) {
    }
    ::close(exec_done[0]);
    std::printf("stray pid %d\n", pid);
}

// A child process that exited and that nobody reaped.
inline void leaves_a_process_unreaped() {
    const pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(0);
    std::printf("stray pid %d\n", pid);
}

inline void leaves_a_thread_running() {
    std::latch running(1);
    std::thread t([&running] {
        std::printf("stray tid %d\n", static_cast<int>(::gettid()));
        std::fflush(stdout);
        running.count_down();
        std::mutex m;
        std::condition_variable cv;
        std::unique_lock lock(m);
        cv.wait(lock, [] { return false; });
    });
    pthread_setname_np(t.native_handle(), "stray worker");
    running.wait();
    t.detach();
}

// Threads that warden and libraries start and keep, and threads the test started and
// ended: none of them is a leak. The caller runs this with thread_leaks = fail.
inline void starts_only_threads_that_are_no_leak(warden::supervisor& sup) {
    sup.spawn([] {}).get(); // the test's supervisor's pool threads
    {
        // Another supervisor's I/O and pool threads, and warden's symbolising thread, which the
        // first report of the process starts.
        warden::supervisor other({.name = "other"});
        other.spawn([] { throw std::runtime_error("reported"); });
        try {
            other.wait();
        } catch (const std::runtime_error&) {
            std::printf("%s", warden::report_for(std::current_exception())->to_string().c_str());
        }
    }
    std::thread([] {}).join();
    spdlog::init_thread_pool(64, 1, [] { warden::fixtures::keep_this_thread(); });
}

// SIGQUIT to this process, as CTest's TIMEOUT_SIGNAL_NAME sends it, while a child is stuck:
// nothing in the program but the fixture installs a handler for it. The dump is written by
// warden's own thread some time after kill() returns, so the body reads its own stderr up to
// the dump's last line (captured_stderr.hpp), copies it to the real stderr and carries on; the
// child is then cancelled, which is no failure.
inline void dumps_where_its_child_is_on_sigquit(warden::supervisor& sup) {
    std::latch started(1);
    sup.spawn(
        [&started](std::stop_token token) {
            started.count_down();
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock lock(m);
            cv.wait(lock, token, [] { return false; });
        },
        {.name = "stuck until cancelled"});
    started.wait();
    warden_test::captured_stderr captured;
    ::kill(::getpid(), SIGQUIT);
    const auto text = captured.read_dump();
    std::fprintf(stderr, "%s", text.c_str());
    std::printf("carried on after the dump\n");
    sup.cancel();
}

} // namespace scenario
