#include <warden/dump.hpp>

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include <pthread.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <doctest/doctest.h>

#include "helpers.hpp"

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Named, and not inlined, so that the stack shows where the child waits.
[[gnu::noinline]] void take_the_lock_held_by_the_test(std::mutex& mutex) {
    std::lock_guard lock(mutex);
    asm volatile("" ::: "memory");
}

namespace asio = boost::asio;

asio::awaitable<void> wait_for_an_hour(std::latch& waiting) {
    asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
    waiting.count_down();
    co_await timer.async_wait(asio::use_awaitable);
}

asio::awaitable<void> halfway_down(std::latch& waiting) {
    co_await wait_for_an_hour(waiting);
}

asio::awaitable<int> top_of_the_chain(std::latch& waiting) {
    co_await halfway_down(waiting);
    co_return 1;
}

// Named, and not inlined: the forked child's frame while it blocks. It holds the pipe's write
// end itself, so the read never sees an end.
[[gnu::noinline]] void read_own_pipe_forever() {
    int fds[2];
    if (::pipe(fds) != 0)
        return;
    std::printf("ready\n");
    std::fflush(stdout);
    char byte;
    [[maybe_unused]] const auto n = ::read(fds[0], &byte, 1);
}

// Resumes itself forever: its chain changes all the time while the dump reads it.
asio::awaitable<void> bounce(int depth, const std::atomic<bool>& stop) {
    if (depth > 0) {
        co_await bounce(depth - 1, stop);
        co_return;
    }
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!stop) {
        timer.expires_after(0s);
        co_await timer.async_wait(asio::use_awaitable);
    }
}

// The `now` of the supervisor's one child, once the thread `tid` (set by the child) is asleep
// in the kernel: inside the lock it takes, not on its way to it.
std::string now_once_asleep(const warden::supervisor& sup, const std::atomic<pid_t>& tid) {
    while (tid == 0)
        std::this_thread::yield();
    REQUIRE(warden_test::thread_is_asleep(tid));
    const auto live = sup.children(warden::with_stacks);
    REQUIRE(live.size() == 1);
    return live[0].now;
}

// The `now` of the supervisor's one child once it holds every one of `parts`, or after 5 s
// (the caller's checks then fail and show it). A dump is a snapshot of /proc: a process seen
// asleep in a wait a moment before may show another state for that moment. A read that
// missed is kept in the test's output.
std::string now_once_it_shows(const warden::supervisor& sup,
                              std::initializer_list<std::string> parts) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (int reads = 1;; ++reads) {
        const auto live = sup.children(warden::with_stacks);
        REQUIRE(live.size() == 1);
        const bool shows = std::all_of(parts.begin(), parts.end(), [&](const auto& part) {
            return contains(live[0].now, part);
        });
        if (shows || std::chrono::steady_clock::now() >= deadline)
            return live[0].now;
        MESSAGE("read " << reads << " missed: " << live[0].now);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

// The lines of `text` that hold each of `parts`, in the order of `parts`.
bool in_order(const std::string& text, std::initializer_list<std::string> parts) {
    std::size_t from = 0;
    for (const auto& part : parts) {
        from = text.find(part, from);
        if (from == std::string::npos)
            return false;
        from += part.size();
    }
    return true;
}

} // namespace

TEST_CASE("a wait_until that times out after a process exited 0 says so, with its last output") {
    warden::supervisor sup{{.name = "early exit"}};
    auto& service = sup.spawn_process(
        {.argv = {"sh", "-c", "echo listening on 8080; echo shutting down; exit 0"},
         .name = "service"});
    const int pid = service.pid();
    // The service is gone before the wait starts, so its condition can never hold.
    sup.wait();
    try {
        sup.wait_until([] { return false; }, 10ms);
        FAIL("no join_timeout");
    } catch (const warden::join_timeout& e) {
        const std::string what = e.what();
        INFO(what);
        CHECK(contains(what, "0 children still running after 10 ms"));
        CHECK(contains(what, "service (process) exited 0 after"));
        CHECK(contains(what, "pid " + std::to_string(pid)));
        CHECK(contains(what, "shutting down"));
        CHECK(e.running().empty());
    }
}

TEST_CASE("dump lists the children that finished last, newest first, with their outcome") {
    warden::supervisor sup{{.name = "history", .policy = warden::policy::collect}};
    for (int i = 0; i < 20; ++i) {
        auto t = sup.spawn(
            [i] {
                if (i == 19)
                    throw std::invalid_argument("bad port 99999");
            },
            {.name = "c" + std::to_string(i)});
        if (i < 19)
            t.get();
        else
            CHECK_THROWS_AS(t.get(), std::invalid_argument);
    }
    const std::string dump = sup.dump();
    INFO(dump);
    CHECK(contains(dump, "warden: supervisor history: 0 children running"));
    CHECK(contains(dump, "c19 (thread) failed with std::invalid_argument: bad port 99999 after"));
    CHECK(contains(dump, "c18 (thread) succeeded after"));
    CHECK(dump.find("c19 (") < dump.find("c18 ("));
    // At least the last 8 are kept; not all 20.
    CHECK(contains(dump, "c11 ("));
    CHECK_FALSE(contains(dump, "c0 ("));
    CHECK_THROWS_AS(sup.wait(), warden::failure_group);
}

TEST_CASE("children(with_stacks) shows a running process's pid, state, descendants and output") {
    warden::supervisor sup;
    // The background sleep exists before "started" is printed.
    auto& p = sup.spawn_process(
        {.argv = {"sh", "-c", "sleep 1000 & echo started; wait"}, .name = "parent shell"});
    p.wait_for_line_blocking("started", 30s);
    const auto plain = sup.children();
    REQUIRE(plain.size() == 1);
    CHECK(plain[0].now.empty());
    const auto live = sup.children(warden::with_stacks);
    REQUIRE(live.size() == 1);
    const std::string& now = live[0].now;
    INFO(now);
    CHECK(contains(now, "pid " + std::to_string(p.pid()) + ": "));
    CHECK(contains(now, "command: sh -c sleep 1000 & echo started; wait"));
    CHECK(contains(now, "descendants:\n  pid "));
    CHECK(contains(now, "last output:\n  started"));
    // The dump shows the same under the running child.
    const std::string dump = sup.dump();
    CHECK(contains(dump, "parent shell (process) running for"));
    CHECK(contains(dump, "    now:\n      pid " + std::to_string(p.pid())));
    sup.cancel();
    sup.wait();
}

TEST_CASE("children(with_stacks) shows the kernel state and wait of a process blocked in a read") {
    warden::supervisor sup{{.name = "reader"}};
    // The shell keeps its FIFO open for writing too, so its own read never sees an end; the
    // FIFO's name is gone before it reads.
    auto& p = sup.spawn_process(
        {.argv = {"sh", "-c",
                  "d=$(mktemp -d) && mkfifo \"$d/f\" && exec 3<>\"$d/f\" && rm -r \"$d\" && "
                  "echo ready && read line <&3"},
         .name = "reads a fifo"});
    p.wait_for_line_blocking("ready", 30s);
    // pipe_read, or anon_pipe_read on newer kernels.
    REQUIRE(warden_test::process_waits_in(p.pid(), "pipe_read"));
    const std::string state = "pid " + std::to_string(p.pid()) + ": S (sleeping), waiting in ";
    const std::string now = now_once_it_shows(sup, {state, "pipe_read"});
    INFO(now);
    CHECK(contains(now, state));
    CHECK(contains(now, "pipe_read"));
    sup.cancel();
    sup.wait();
}

TEST_CASE("children(with_stacks) shows a forked child's pid and kernel state where it blocks") {
    warden::supervisor sup{{.name = "forked reader"}};
    auto& p = sup.spawn_forked([] { read_own_pipe_forever(); }, {.name = "reads its own pipe"});
    p.wait_for_line_blocking("ready", 30s);
    // pipe_read, or anon_pipe_read on newer kernels.
    REQUIRE(warden_test::process_waits_in(p.pid(), "pipe_read"));
    CHECK(sup.children().at(0).kind == warden::child_kind::forked);
    const std::string state = "pid " + std::to_string(p.pid()) + ": S (sleeping), waiting in ";
    const std::string now = now_once_it_shows(sup, {state, "pipe_read", "last output:\n  ready"});
    INFO(now);
    CHECK(contains(now, state));
    CHECK(contains(now, "pipe_read"));
    CHECK(contains(now, "last output:\n  ready"));
    sup.cancel();
    sup.wait();
}

TEST_CASE("the dump's finished children show an exit code, a kill by a signal and cancellations") {
    warden::supervisor sup{{.name = "outcomes", .policy = warden::policy::collect}};
    auto& exits = sup.spawn_process({.argv = {"sh", "-c", "exit 3"}, .name = "exits 3"});
    CHECK_THROWS_AS(exits.as_task().get(), warden::process_error);
    auto& killed = sup.spawn_process({.argv = {"sh", "-c", "kill -KILL $$"}, .name = "killed"});
    CHECK_THROWS_AS(killed.as_task().get(), warden::process_crashed);
    auto& terminated = sup.spawn_process({.argv = {"sleep", "1000"}, .name = "terminated"});
    terminated.terminate();
    CHECK_THROWS_AS(terminated.as_task().get(), boost::system::system_error);
    auto waits = sup.spawn(
        []() -> asio::awaitable<void> {
            asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
            co_await timer.async_wait(asio::use_awaitable);
        },
        {.name = "waits an hour"});
    waits.cancel();
    CHECK_THROWS_AS(waits.get(), boost::system::system_error);
    const std::string dump = sup.dump();
    INFO(dump);
    CHECK(contains(dump, "exits 3 (process) exited 3, failed with warden::process_error"));
    CHECK(contains(dump, "killed (process) killed by SIGKILL, failed with"));
    CHECK(contains(dump, "terminated (process) killed by SIGTERM, cancelled after"));
    CHECK(contains(dump, "waits an hour (coroutine) cancelled after"));
    CHECK_THROWS_AS(sup.wait(), warden::failure_group);
}

TEST_CASE("dump_all names every live supervisor and none that has ended") {
    warden::supervisor first{{.name = "first of dump_all"}};
    { warden::supervisor gone{{.name = "gone before dump_all"}}; }
    warden::supervisor second{{.name = "second of dump_all"}};
    const std::string all = warden::dump_all();
    INFO(all);
    CHECK(contains(all, "warden: supervisor first of dump_all:"));
    CHECK(contains(all, "warden: supervisor second of dump_all:"));
    CHECK(all.find("first of dump_all") < all.find("second of dump_all"));
    CHECK_FALSE(contains(all, "gone before dump_all"));
    CHECK(contains(all, "warden: end of dump\n"));
}

TEST_CASE("the dump signal writes every supervisor's dump to stderr and the process carries on") {
    auto result =
        warden_test::run_program(std::string(WARDEN_TEST_PROGRAMS_DIR) + "/warden_dump_signal");
    INFO(result.output);
    CHECK(result.exit_code == 0);
    CHECK(contains(result.output, "warden: supervisor signalled: 1 child running"));
    CHECK(contains(result.output, "stuck child (thread) running for"));
    CHECK(contains(result.output, "dump_signal.cpp:"));
    CHECK(contains(result.output, "warden: end of dump"));
    CHECK(contains(result.output, "still running"));
}

TEST_CASE("children(with_stacks) shows the live stack of a thread child blocked on a mutex") {
    warden::supervisor sup{{.name = "deadlock"}};
    std::mutex held;
    std::unique_lock test_holds(held);
    std::atomic<pid_t> tid{0};
    sup.spawn(
        [&] {
            tid = warden_test::this_thread_id();
            take_the_lock_held_by_the_test(held);
        },
        {.name = "waits for the mutex"});
    const std::string now = now_once_asleep(sup, tid);
    INFO(now);
    CHECK(contains(now, "on thread " + std::to_string(tid.load())));
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer delivers a signal only when the thread leaves the interceptor it is
    // blocked in: the dump must say so rather than wait.
    CHECK((contains(now, "did not answer") || contains(now, "take_the_lock_held_by_the_test")));
#else
    CHECK((contains(now, "pthread_mutex_lock") || contains(now, "__lll_lock_wait")));
    CHECK(contains(now, "take_the_lock_held_by_the_test"));
    // The pool's own frames are left out: its job and Asio's scheduler that runs it.
    CHECK_FALSE(contains(now, "io_context"));
    CHECK_FALSE(contains(now, "blocking_job"));
    CHECK_FALSE(contains(now, "scheduler"));
    CHECK(contains(sup.dump(), "take_the_lock_held_by_the_test"));
#endif
    test_holds.unlock();
    sup.wait();
}

TEST_CASE("a thread child that blocks the stack signal is reported as not answering") {
    warden::supervisor sup{{.name = "deaf"}};
    std::latch release(1);
    std::atomic<pid_t> tid{0};
    sup.spawn(
        [&] {
            // The signal the dump asks a thread for its stack with (docs/hang-reports.md).
            sigset_t stack_signal;
            sigset_t before;
            sigemptyset(&stack_signal);
            sigaddset(&stack_signal, SIGRTMIN + 5);
            pthread_sigmask(SIG_BLOCK, &stack_signal, &before);
            tid = warden_test::this_thread_id();
            release.wait();
            // The pool thread runs other children next: its mask goes back as it was, and the
            // signal still pending is answered then, into the request the dump abandoned.
            pthread_sigmask(SIG_SETMASK, &before, nullptr);
        },
        {.name = "blocks the stack signal"});
    while (tid == 0)
        std::this_thread::yield();
    REQUIRE(warden_test::thread_is_asleep(tid));
    auto asked = std::async(std::launch::async, [&] { return sup.children(warden::with_stacks); });
    // A deadline, not a figure: a dump that waited for the thread would never return.
    const bool returned = asked.wait_for(60s) == std::future_status::ready;
    release.count_down();
    REQUIRE(returned);
    const auto live = asked.get();
    REQUIRE(live.size() == 1);
    const std::string& now = live[0].now;
    INFO(now);
    CHECK(contains(now, "on thread " + std::to_string(tid.load())));
    CHECK(contains(now, "the thread did not answer within 200 ms (signal blocked?)"));
    CHECK_FALSE(contains(now, "stack:"));
    sup.wait();
}

TEST_CASE(
    "children(with_stacks) shows a suspended coroutine child's await chain, innermost first") {
    warden::supervisor sup{{.name = "chains"}};
    std::latch waiting(2);
    const unsigned line = __LINE__ + 1;
    sup.spawn([&]() -> asio::awaitable<void> { co_await halfway_down(waiting); },
              {.name = "void child"});
    sup.spawn([&] { return top_of_the_chain(waiting); }, {.name = "int child"});
    waiting.wait();
    const auto live = sup.children(warden::with_stacks);
    REQUIRE(live.size() == 2);
    for (const auto& child : live) {
        INFO(child.name << ":\n" << child.now);
        CHECK(contains(child.now, "suspended in (innermost first):"));
        CHECK(contains(child.now, "awaiting an Asio operation: "
                                  "boost::asio::basic_waitable_timer::initiate_async_wait"));
        // Each coroutine's name and where it is defined.
        CHECK(in_order(child.now, {"initiate_async_wait", "wait_for_an_hour(std::latch&) at",
                                   "test_dump.cpp:", "halfway_down(std::latch&) at"}));
        // warden's own frames are not the user's.
        CHECK_FALSE(contains(child.now, "warden::detail"));
    }
    CHECK(in_order(live[0].now, {"halfway_down", "test_dump.cpp:" + std::to_string(line)}));
    CHECK(in_order(live[1].now, {"halfway_down", "top_of_the_chain(std::latch&) at"}));
    CHECK(contains(sup.dump(), "wait_for_an_hour(std::latch&)"));
    sup.cancel();
    sup.wait();
}

TEST_CASE("a coroutine child stuck inside a handler is shown by its thread's live stack") {
    warden::supervisor sup{{.name = "blocked handler"}};
    std::mutex held;
    std::unique_lock test_holds(held);
    std::atomic<pid_t> tid{0};
    sup.spawn(
        [&]() -> asio::awaitable<void> {
            tid = warden_test::this_thread_id();
            // Blocks the thread that runs the coroutine: no await point to show.
            take_the_lock_held_by_the_test(held);
            co_return;
        },
        {.name = "blocks its thread"});
    const std::string now = now_once_asleep(sup, tid);
    INFO(now);
    CHECK(contains(now, "running now: one of its handlers has not returned"));
    CHECK(contains(now, "on thread " + std::to_string(tid.load())));
#if !defined(__SANITIZE_THREAD__)
    CHECK(contains(now, "take_the_lock_held_by_the_test"));
#endif
    test_holds.unlock();
    sup.wait();
}

TEST_CASE("dumps race a coroutine child's frames being pushed and popped, and read them safely") {
    // Each dump closes the child's gate, walks its frames and opens it again while the child
    // resumes through a ten-deep chain as fast as it can; run under the sanitizers by CI.
    warden::supervisor sup{{.name = "racing"}};
    std::atomic<bool> stop{false};
    for (int i = 0; i < 4; ++i)
        sup.spawn([&stop, i]() -> asio::awaitable<void> { co_await bounce(10 + i, stop); });
    int walked = 0;
    const auto until = std::chrono::steady_clock::now() + 300ms;
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while ((std::chrono::steady_clock::now() < until || walked < 20) &&
           std::chrono::steady_clock::now() < give_up) {
        for (const auto& child : sup.children(warden::with_stacks))
            if (contains(child.now, "bounce(int, std::atomic<bool> const&) at"))
                ++walked;
    }
    stop = true;
    sup.wait();
    CHECK(walked >= 20);
}
