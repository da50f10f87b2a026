// The rows of docs/bad-input.md that are not about subprocesses (those are in
// test_process.cpp). Each test is named after its row.

#include <warden/supervisor.hpp>

#include <atomic>
#include <chrono>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <doctest/doctest.h>

#include "helpers.hpp"
#include "json_check.hpp"
#include "log_sink.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using warden_test::warden_logger;
using warden_test::watching_sink;

namespace {

// A thread that calls `then` once the calling thread sleeps in a blocking call: how a test
// knows a wait has begun, with no sleep.
std::jthread once_asleep(std::function<void()> then) {
    return std::jthread([waiter = warden_test::this_thread_id(), then = std::move(then)] {
        warden_test::thread_is_asleep(waiter);
        then();
    });
}

// A thread child that ignores cancellation until `release`; returns once it runs.
void spawn_stubborn(warden::supervisor& sup, std::latch& release, std::string name,
                    std::atomic<bool>* finished = nullptr) {
    std::latch started(1);
    sup.spawn(
        [&release, &started, finished] {
            started.count_down();
            release.wait(); // ignores its stop token
            if (finished != nullptr)
                *finished = true;
        },
        {.name = std::move(name)});
    started.wait();
}

struct throwing_cleanup {
    ~throwing_cleanup() noexcept(false) { throw std::runtime_error("cleanup failed"); }
};

} // namespace

TEST_CASE("bad input: spawn after cancel throws supervisor_closed and runs nothing") {
    warden::supervisor sup;
    sup.cancel();
    bool ran = false;
    CHECK_THROWS_AS(sup.spawn([&] { ran = true; }), warden::supervisor_closed);
    CHECK_THROWS_AS(sup.spawn([&]() -> asio::awaitable<void> {
        ran = true;
        co_return;
    }),
                    warden::supervisor_closed);
    sup.wait();
    CHECK_FALSE(ran);
}

TEST_CASE("bad input: join twice returns the second time") {
    warden::supervisor sup;
    sup.spawn([] { throw std::runtime_error("x"); });
    CHECK_THROWS_AS(sup.wait(), std::runtime_error);
    CHECK_NOTHROW(sup.wait());
    CHECK_NOTHROW(sup.wait_for(1s));
}

TEST_CASE("bad input: join from inside a child of the same supervisor fails that child") {
    warden::supervisor sup;
    sup.spawn([&] { sup.wait_for(1h); }, {.name = "impatient"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const std::logic_error& e) {
        CHECK(std::string(e.what()).find("inside child impatient") != std::string::npos);
    }
}

TEST_CASE("bad input: a non-std exception with a throwing what() is described by its type") {
    struct odd {
        const char* what() const { throw 1; }
    };
    warden::supervisor sup;
    sup.spawn([] { throw odd{}; });
    CHECK_THROWS_AS(sup.wait(), odd);
    CHECK(sup.first_failure()->what.find("odd") != std::string::npos);
}

TEST_CASE("bad input: an exception thrown from a destructor during cancellation is kept") {
    warden::supervisor sup{warden::supervisor_options{.threads = 2}};
    std::latch cleaner_running(1);
    sup.spawn(
        [&](std::stop_token token) {
            throwing_cleanup guard;
            cleaner_running.count_down();
            while (!token.stop_requested())
                std::this_thread::yield();
        },
        {.name = "cleaner"});
    sup.spawn(
        [&] {
            cleaner_running.wait();
            throw std::runtime_error("first");
        },
        {.name = "first"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "first");
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        REQUIRE(report->suppressed.size() == 1);
        CHECK(report->suppressed[0] == "cleaner (thread) failed: cleanup failed");
    }
}

TEST_CASE("bad input: 10k children failing at the same instant give one first failure") {
    constexpr int count = 10'000;
    // Ten thousand error lines would only slow the storm down (most of all under sanitizers).
    warden::supervisor{}.spawn([] {}).get();
    auto logger = spdlog::get("warden");
    const auto level = logger->level();
    logger->set_level(spdlog::level::off);
    // Grace long enough for every child to throw, however slow the build.
    warden::supervisor sup{
        warden::supervisor_options{.capture = warden::capture::location, .cancel_grace = 120s}};
    auto gate = std::make_shared<asio::steady_timer>(sup.get_executor(), 1h);
    std::atomic<int> thrown{0};
    std::latch waiting(count);
    for (int i = 0; i < count; ++i)
        sup.spawn([&, gate]() -> asio::awaitable<void> {
            waiting.count_down();
            // Not cancellable: every child throws once the gate opens.
            co_await asio::this_coro::throw_if_cancelled(false);
            co_await gate->async_wait(asio::bind_cancellation_slot(
                asio::cancellation_slot(), asio::as_tuple(asio::use_awaitable)));
            ++thrown;
            throw std::runtime_error("storm");
        });
    waiting.wait();
    asio::post(sup.get_executor(), [gate] { gate->cancel(); });
    try {
        sup.wait_for(120s);
        FAIL("no throw");
    } catch (const std::runtime_error&) {
        auto all = sup.failures();
        CHECK(thrown.load() == count);
        CHECK(all.size() == static_cast<std::size_t>(count));
        CHECK(all.front().error == std::current_exception());
        std::set<std::string> names;
        for (const auto& f : all)
            names.insert(f.child);
        CHECK(names.size() == static_cast<std::size_t>(count)); // each exactly once
        CHECK(warden::report_for(std::current_exception())->suppressed.size() ==
              static_cast<std::size_t>(count - 1));
    }
    logger->set_level(level);
}

namespace {

// The "warden" logger off while it lives: a thousand failures' lines would only slow a test.
class logger_off {
  public:
    logger_off()
        : logger_(warden_logger())
        , level_(logger_->level()) {
        logger_->set_level(spdlog::level::off);
    }
    ~logger_off() { logger_->set_level(level_); }
    logger_off(const logger_off&) = delete;
    logger_off& operator=(const logger_off&) = delete;

  private:
    std::shared_ptr<spdlog::logger> logger_;
    spdlog::level::level_enum level_;
};

void spawn_failure_number(warden::supervisor& sup, int i) {
    sup.spawn([i] { throw std::runtime_error("failure " + std::to_string(i)); });
}

} // namespace

TEST_CASE("bad input: a collect supervisor that fails forever keeps a bounded number of failures") {
    // A service loop under collect: each failure is thrown by the wait that follows it. Past
    // 1024, the oldest already thrown are let go (the first never), and counted.
    constexpr int count = 1100;
    constexpr std::size_t kept_later = 1024;
    warden::supervisor sup{
        {.policy = warden::policy::collect, .capture = warden::capture::location}};
    {
        logger_off quiet;
        for (int i = 0; i < count; ++i) {
            spawn_failure_number(sup, i);
            CHECK_THROWS_AS(sup.wait(), warden::failure_group);
        }
    }
    const auto all = sup.failures();
    REQUIRE(all.size() == 1 + kept_later);
    CHECK(all.front().what == "failure 0");
    CHECK(all[1].what == "failure " + std::to_string(count - kept_later));
    CHECK(all.back().what == "failure " + std::to_string(count - 1));
    const auto first = sup.first_failure();
    REQUIRE(first);
    REQUIRE(first->suppressed.size() == 1 + kept_later);
    CHECK(first->suppressed.front() ==
          fmt::format("... {} earlier failures, already thrown by a wait, no longer kept",
                      count - 1 - kept_later));
    CHECK(first->suppressed.back().find("failure " + std::to_string(count - 1)) !=
          std::string::npos);
}

TEST_CASE("bad input: failures no wait has thrown yet are never let go") {
    constexpr int count = 1100;
    logger_off quiet;
    warden::supervisor sup{
        {.policy = warden::policy::collect, .capture = warden::capture::location}};
    for (int i = 0; i < count; ++i)
        spawn_failure_number(sup, i);
    try {
        sup.wait();
        FAIL("wait() returned");
    } catch (const warden::failure_group& group) {
        REQUIRE(group.reports().size() == static_cast<std::size_t>(count));
        std::set<std::string> whats;
        for (const auto& r : group.reports())
            whats.insert(r.what);
        CHECK(whats.size() == static_cast<std::size_t>(count)); // each exactly once
    }
    // Thrown now, all of them: the oldest later ones go, the first stays.
    CHECK(sup.failures().size() == 1 + 1024);
}

TEST_CASE("bad input: a child that never honours cancellation is waited for and logged") {
    std::latch release(1);
    auto logger = warden_logger();
    REQUIRE(logger != nullptr);
    // The destructor's warning is what lets the straggler go: it must come while the
    // destructor is still waiting.
    auto sink = std::make_shared<watching_sink>("ignores cancellation: stubborn",
                                                [&] { release.count_down(); });
    logger->sinks().push_back(sink);
    std::atomic<bool> finished{false};
    {
        warden::supervisor sup{warden::supervisor_options{.cancel_grace = 20ms}};
        spawn_stubborn(sup, release, "stubborn", &finished);
    }
    logger->sinks().pop_back();
    CHECK(finished);
}

// Destroys a supervisor on `io` whose one coroutine child waits an hour on its timer, while
// nothing runs `io`: stopped (`stop`), or just no longer run by this thread. The destructor's
// warning is what runs `io` again, on a thread of its own, so the warning must come while the
// destructor waits. Returns how many warnings had `expected` in them.
int destroy_while_nothing_runs_the_io_context(bool stop, const std::string& expected) {
    auto logger = warden_logger();
    REQUIRE(logger != nullptr);
    asio::io_context io;
    std::jthread runner;
    std::atomic<int> said{0};
    auto sink = std::make_shared<watching_sink>(expected, [&] {
        if (said++ == 0)
            runner = std::jthread([&io] {
                io.restart();
                io.run();
            });
    });
    logger->sinks().push_back(sink);
    {
        warden::supervisor sup{io.get_executor(), {.cancel_grace = 20ms}};
        sup.spawn(
            []() -> asio::awaitable<void> {
                asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
                co_await timer.async_wait(asio::use_awaitable);
            },
            {.name = "sleeper"});
        io.poll(); // it starts, and waits on its timer
        if (stop)
            io.stop();
    }
    logger->sinks().pop_back();
    runner.join();
    return said.load();
}

TEST_CASE("bad input: a supervisor destroyed while its io_context is stopped says so, and ends "
          "once it runs again") {
    CHECK(destroy_while_nothing_runs_the_io_context(true, "its io_context is stopped") >= 1);
}

TEST_CASE("bad input: a supervisor destroyed while nothing runs its io_context says so") {
    CHECK(destroy_while_nothing_runs_the_io_context(false, "has not run: nothing runs it") >= 1);
}

// A failure's log line is handed over behind the parent's resumption, on the parent's
// executor (child_finished): a parent that stops that io_context at once must not lose it.
// `spawn_failing` spawns a child that fails once `go` has run, after the parent's join has
// suspended; it returns `go`.
template <class SpawnFailing>
void failure_logged_though_io_stops(SpawnFailing spawn_failing) {
    auto logger = warden_logger();
    REQUIRE(logger != nullptr);
    std::atomic<int> logged{0};
    auto sink = std::make_shared<watching_sink>("stopped-io failure", [&] { ++logged; });
    logger->sinks().push_back(sink);
    bool caught = false;
    {
        asio::io_context io;
        warden::supervisor sup{io.get_executor()};
        auto go = spawn_failing(sup);
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                try {
                    co_await sup.join();
                } catch (const std::runtime_error&) {
                    caught = true;
                    io.stop(); // the line's hand-over, queued behind this, never runs
                }
            },
            asio::detached);
        asio::post(io, go); // after the parent's first turn, in which its join suspends
        io.run();
    } // the destructor hands the line over itself, and waits for it
    logger->sinks().pop_back();
    CHECK(caught);
    CHECK(logged == 1);
}

TEST_CASE("bad input: a failure is logged though the caller's io_context stops once the parent "
          "has it") {
    SUBCASE("coroutine child") {
        failure_logged_though_io_stops([](warden::supervisor& sup) {
            sup.spawn([]() -> asio::awaitable<void> {
                co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
                throw std::runtime_error("stopped-io failure");
            });
            return [] {};
        });
    }
    SUBCASE("thread child, whose failure ends on a pool thread") {
        auto release = std::make_shared<std::latch>(1);
        failure_logged_though_io_stops([&](warden::supervisor& sup) {
            sup.spawn([release] {
                release->wait();
                throw std::runtime_error("stopped-io failure");
            });
            return [release] { release->count_down(); };
        });
    }
}

TEST_CASE("bad input: wait_for(duration::max()) waits without a limit") {
    warden::supervisor sup;
    std::latch release(1);
    sup.spawn([&] { release.wait(); });
    // Lets the child end only once this thread sleeps inside wait_for: a wait that gave up at
    // once would have thrown join_timeout with the child still running.
    auto releaser = once_asleep([&] { release.count_down(); });
    CHECK_NOTHROW(sup.wait_for(std::chrono::steady_clock::duration::max()));
    CHECK_NOTHROW(sup.wait_for(std::chrono::hours::max()));
}

TEST_CASE("bad input: wait_until with a timeout of duration::max() waits without a limit") {
    warden::supervisor sup;
    std::atomic<bool> ready{false};
    int checks = 0;
    auto notifier = once_asleep([&] {
        ready = true;
        sup.notify();
    });
    CHECK_NOTHROW(sup.wait_until(
        [&] {
            ++checks;
            return ready.load();
        },
        std::chrono::years::max()));
    CHECK(checks >= 2);
}

TEST_CASE("bad input: wait_until with poll = duration::max() sleeps until notified") {
    warden::supervisor sup;
    std::atomic<bool> ready{false};
    std::atomic<int> checks{0};
    auto notifier = once_asleep([&] {
        ready = true;
        sup.notify();
    });
    sup.wait_until(
        [&] {
            ++checks;
            return ready.load();
        },
        1h, std::chrono::steady_clock::duration::max());
    // A wait that spins calls its predicate thousands of times before anyone notifies it.
    CHECK(checks.load() <= 3);
}

TEST_CASE("bad input: wait_until with a poll that is not positive is refused") {
    warden::supervisor sup;
    CHECK_THROWS_AS(sup.wait_until([] { return true; }, 1s, 0ms), std::invalid_argument);
    CHECK_THROWS_AS(sup.wait_until([] { return true; }, 1s, -5ms), std::invalid_argument);
}

TEST_CASE("bad input: cancel_grace = milliseconds::max() means no limit") {
    warden::supervisor sup{{.cancel_grace = std::chrono::milliseconds::max()}};
    std::latch release(1);
    std::atomic<bool> sibling_done{false};
    spawn_stubborn(sup, release, "slow", &sibling_done);
    sup.spawn([] { throw std::runtime_error("first"); });
    auto releaser = once_asleep([&] { release.count_down(); });
    try {
        sup.wait();
        FAIL("wait() returned");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "first");
        // An overflowing grace would have given up at once, naming the sibling a straggler.
        CHECK(warden::report_for(std::current_exception())->stragglers.empty());
        CHECK(sibling_done);
    }
}

TEST_CASE("bad input: cancel_grace = 0 makes the destructor warn once, not in a loop") {
    auto logger = warden_logger();
    REQUIRE(logger != nullptr);
    std::latch release(1);
    std::atomic<int> warnings{0};
    auto sink = std::make_shared<watching_sink>("ignores cancellation: stubborn", [&] {
        if (warnings.fetch_add(1) == 0)
            release.count_down();
    });
    logger->sinks().push_back(sink);
    {
        warden::supervisor sup{{.cancel_grace = 0ms}};
        spawn_stubborn(sup, release, "stubborn");
    }
    logger->sinks().pop_back();
    // The first warning releases the child; a destructor that loops on a zero wait logs
    // hundreds more before the child's thread gets to end.
    CHECK(warnings.load() <= 2);
}

TEST_CASE("bad input: a thread pool too large to create fails the spawn and leaves nothing") {
    const auto threads_before = warden_test::thread_count_before_threads();
    for (std::size_t threads : {std::size_t{1} << 20, std::numeric_limits<std::size_t>::max()}) {
        warden::supervisor sup{{.threads = threads}};
        bool ran = false;
        try {
            sup.spawn([&] { ran = true; });
            FAIL("spawn did not throw");
        } catch (const warden::spawn_error& e) {
            CHECK(e.argument() == "supervisor_options::threads");
            CHECK(std::string(e.what()).find(std::to_string(threads)) != std::string::npos);
        }
        CHECK(sup.children().empty());
        CHECK_NOTHROW(sup.wait_for(1s));
        CHECK_FALSE(ran);
        // A coroutine child still runs: only the pool is missing.
        CHECK(sup.spawn([]() -> asio::awaitable<int> { co_return 7; }).get() == 7);
    }
    CHECK(warden_test::thread_count_once_settled(threads_before) == threads_before);
}

TEST_CASE("bad input: a pool that runs out of threads while starting fails the spawn") {
    // RLIMIT_NPROC is checked for unprivileged users only: the program drops to nobody.
    auto result = warden_test::run_program(std::string(WARDEN_TEST_PROGRAMS_DIR) +
                                           "/warden_pool_limit_program");
    INFO(result.output);
    CHECK(result.exit_code == 0);
    CHECK(result.output.find("spawn_error: supervisor_options::threads") != std::string::npos);
    CHECK(result.output.find("wait returned, nothing left") != std::string::npos);
}

TEST_CASE("bad input: a child that spawns while its supervisor is cancelled ends as cancelled") {
    warden::supervisor sup;
    std::latch started(1);
    std::atomic<bool> refused{false};
    sup.spawn([&](std::stop_token stop) {
        started.count_down();
        while (!stop.stop_requested())
            std::this_thread::yield();
        try {
            sup.spawn([] {});
        } catch (const warden::supervisor_closed&) {
            refused = true;
            throw;
        }
    });
    started.wait();
    sup.cancel();
    CHECK_NOTHROW(sup.wait());
    CHECK(refused);
    CHECK(sup.failures().empty());
}

TEST_CASE("bad input: a spawn refused before the supervisor's cancel reached the spawning child "
          "is no failure") {
    warden::supervisor sup;
    std::latch closed(1);
    std::latch spawn_tried(1);
    // Runs inside sup.cancel(), after the supervisor is closed and before its children are
    // cancelled: the cancel waits here until the child has tried to spawn.
    std::stop_callback hold_the_cancel(sup.stop_token(), [&] {
        closed.count_down();
        spawn_tried.wait();
    });
    std::atomic<bool> refused{false};
    std::atomic<bool> cancelled_when_refused{false};
    sup.spawn([&](std::stop_token stop) {
        closed.wait();
        try {
            sup.spawn([] {});
        } catch (const warden::supervisor_closed&) {
            refused = true;
            cancelled_when_refused = stop.stop_requested();
            spawn_tried.count_down();
            throw;
        }
        spawn_tried.count_down();
    });
    sup.cancel();
    CHECK_NOTHROW(sup.wait());
    CHECK(refused);
    CHECK(cancelled_when_refused);
    CHECK(sup.failures().empty());
}

TEST_CASE("bad input: a destroyed supervisor does not log refused spawns as failures") {
    auto logger = warden_logger();
    REQUIRE(logger != nullptr);
    std::atomic<int> unjoined{0};
    auto sink = std::make_shared<watching_sink>("failure nobody joined", [&] { ++unjoined; });
    logger->sinks().push_back(sink);
    std::atomic<bool> refused{false};
    {
        warden::supervisor sup;
        std::latch started(1);
        sup.spawn([&]() -> asio::awaitable<void> {
            started.count_down();
            try {
                asio::steady_timer forever(co_await asio::this_coro::executor, 1h);
                co_await forever.async_wait(asio::use_awaitable);
            } catch (...) {
            }
            try {
                sup.spawn([] {});
            } catch (const warden::supervisor_closed&) {
                refused = true;
                throw;
            }
        });
        started.wait();
    }
    logger->sinks().pop_back();
    CHECK(refused);
    CHECK(unjoined.load() == 0);
}

TEST_CASE("bad input: join_timeout with 20k children lists a bounded number, the oldest first") {
    warden::supervisor sup;
    constexpr int count = 20000;
    std::latch release(1);
    std::atomic<bool> go{false};
    for (int i = 0; i < count; ++i)
        sup.spawn(
            [&](std::stop_token stop) {
                if (!stop.stop_requested() && !go)
                    release.wait();
            },
            {.name = "c" + std::to_string(i)});
    try {
        sup.wait_for(10ms);
        FAIL("no join_timeout");
    } catch (const warden::join_timeout& e) {
        REQUIRE(!e.running().empty());
        CHECK(e.running().size() <= 32);
        CHECK(e.running().size() + e.unlisted() == static_cast<std::size_t>(count));
        CHECK(e.running().front().name == "c0");
        const std::string what = e.what();
        CHECK(what.find(std::to_string(count) + " children still running") != std::string::npos);
        CHECK(what.find(fmt::format("... and {} more", e.unlisted())) != std::string::npos);
        CHECK(what.size() < 64 * 1024);
    }
    go = true;
    release.count_down();
    sup.wait();
}

TEST_CASE("bad input: an inner supervisor's failure names the child that threw, in text and "
          "JSON") {
    warden::supervisor outer{{.name = "outer"}};
    int leaf_line = 0;
    outer.spawn(
        [&] {
            warden::supervisor inner{{.name = "inner"}};
            leaf_line = __LINE__ + 1;
            inner.spawn([] { throw std::runtime_error("leaf broke"); }, {.name = "leaf"});
            inner.wait();
        },
        {.name = "middle"});
    try {
        outer.wait();
        FAIL("no failure");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "leaf broke");
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        CHECK(report->child == "middle");
        REQUIRE(report->inner != nullptr);
        const auto& leaf = report->innermost();
        CHECK(leaf.child == "leaf");
        CHECK(leaf.origin.supervisor == "inner");
        CHECK(leaf.origin.where.line() == static_cast<unsigned>(leaf_line));
        const auto text = report->to_string();
        CHECK(text.find("passed up from leaf (thread) of supervisor inner") != std::string::npos);
        CHECK(text.find(fmt::format("test_bad_input.cpp:{}", leaf_line)) != std::string::npos);
        // The same chain in JSON: the leaf's own report nested whole, each origin with the
        // child that spawned it (none for the outer child: the test spawned it).
        const auto json = report->to_json();
        INFO(json);
        CHECK(warden_test::is_valid_json(json));
        CHECK(json.starts_with(R"({"child":"middle","kind":"thread",)"));
        CHECK(json.find(R"("parent":"","supervisor":"outer")") != std::string::npos);
        CHECK(json.find(R"("inner":{"child":"leaf","kind":"thread","what":"leaf broke")") !=
              std::string::npos);
        CHECK(json.find(R"("parent":"middle","supervisor":"inner")") != std::string::npos);
        CHECK(json.ends_with(R"("inner":null}})"));
    }
}

TEST_CASE("bad input: the stop token is requested before a wait throws the first failure") {
    warden::supervisor sup;
    std::atomic<bool> callback_ran{false};
    std::stop_callback on_stop(sup.stop_token(), [&] { callback_ran = true; });
    sup.spawn([] { throw std::runtime_error("x"); });
    CHECK_THROWS_AS(sup.wait_for(10s), std::runtime_error);
    CHECK(sup.stop_token().stop_requested());
    CHECK(callback_ran);
}

TEST_CASE("bad input: a wait that starts while the stop callbacks run throws only after they end") {
    warden::supervisor sup;
    std::latch in_callback(1);
    std::atomic<bool> callback_done{false};
    std::stop_callback on_stop(sup.stop_token(), [&] {
        in_callback.count_down();
        // Not synchronisation: room for a wait that is not held back to throw meanwhile.
        std::this_thread::sleep_for(100ms);
        callback_done = true;
    });
    sup.spawn([] { throw std::runtime_error("x"); });
    in_callback.wait(); // the failing child's thread is in the callback now
    CHECK_THROWS_AS(sup.wait_for(10s), std::runtime_error);
    CHECK(callback_done);
}

TEST_CASE("bad input: every duration saturates to the clock's range") {
    using clock_duration = std::chrono::steady_clock::duration;
    using warden::detail::saturate;
    CHECK(saturate(std::chrono::hours::max()) == clock_duration::max());
    CHECK(saturate(std::chrono::years::max()) == clock_duration::max());
    CHECK(saturate(std::chrono::milliseconds::max()) == clock_duration::max());
    CHECK(saturate(std::chrono::hours::min()) == clock_duration::min());
    CHECK(saturate(std::chrono::duration<double>(std::numeric_limits<double>::infinity())) ==
          clock_duration::max());
    CHECK(saturate(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())) ==
          clock_duration::max());
    CHECK(saturate(std::chrono::seconds(5)) == std::chrono::seconds(5));
    CHECK(saturate(std::chrono::duration<double>(0.25)) == std::chrono::milliseconds(250));
    CHECK(saturate(-std::chrono::seconds(1)) == -std::chrono::seconds(1));
    const auto now = std::chrono::steady_clock::now();
    CHECK(warden::detail::deadline_after(clock_duration::max(), now) ==
          std::chrono::steady_clock::time_point::max());
    CHECK(warden::detail::deadline_after(-std::chrono::hours(1), now) == now);
    CHECK(warden::detail::deadline_after(std::chrono::seconds(1), now) ==
          now + std::chrono::seconds(1));
}
