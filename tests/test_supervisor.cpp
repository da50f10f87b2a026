#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <doctest/doctest.h>

#include "helpers.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Blocks until the token is stopped; returns true if it was (never times out).
bool block_until_stopped(std::stop_token token) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    return cv.wait(lock, token, [] { return false; }) || token.stop_requested();
}

asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
    asio::steady_timer timer(co_await asio::this_coro::executor, d);
    co_await timer.async_wait(asio::use_awaitable);
}

struct unique_error : std::runtime_error {
    explicit unique_error(int id)
        : std::runtime_error("unique_error")
        , id(id) {}
    int id;
};

} // namespace

namespace custom_ns {
struct not_an_exception {
    int code;
};
} // namespace custom_ns

TEST_CASE("a thread child's exception reaches wait() as the original object") {
    warden::supervisor sup;
    sup.spawn([] { throw unique_error(7); });
    try {
        sup.wait();
        FAIL("wait() did not throw");
    } catch (const unique_error& e) {
        CHECK(e.id == 7);
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        CHECK(report->what == "unique_error");
        CHECK(report->kind == warden::child_kind::thread);
        CHECK(report->error == std::current_exception());
    }
}

TEST_CASE("a coroutine child's exception reaches wait() with its type") {
    warden::supervisor sup;
    sup.spawn([]() -> asio::awaitable<void> {
        co_await sleep_for(1ms);
        throw std::out_of_range("index 9");
    });
    CHECK_THROWS_AS(sup.wait(), std::out_of_range);
}

TEST_CASE("a coroutine factory that throws before its coroutine exists fails as a child") {
    // Not coroutines themselves: they throw when called, before any awaitable exists.
    auto stateless = []() -> asio::awaitable<void> { throw std::length_error("stateless"); };
    const std::string text = "with state";
    auto with_state = [text]() -> asio::awaitable<void> { throw std::length_error(text); };
    for (int i = 0; i < 2; ++i) {
        CAPTURE(i);
        warden::supervisor sup{{.policy = warden::policy::collect}};
        auto t = i == 0 ? sup.spawn(stateless) : sup.spawn(with_state);
        try {
            sup.wait();
            FAIL("wait() returned");
        } catch (const warden::failure_group& group) {
            REQUIRE(group.reports().size() == 1);
            CHECK(group.reports()[0].what == (i == 0 ? "stateless" : "with state"));
            CHECK(group.reports()[0].kind == warden::child_kind::coroutine);
        }
        CHECK(t.done());
    }
}

namespace {

std::atomic<std::thread::id> factory_called_on;

// Not a coroutine itself: it runs when called, and says where.
asio::awaitable<void> stateless_factory() {
    factory_called_on = std::this_thread::get_id();
    return sleep_for(1ms);
}

} // namespace

TEST_CASE("own I/O thread: a stateless coroutine factory spawned from another thread is called "
          "there") {
    warden::supervisor sup;
    std::atomic<std::thread::id> io_thread;
    sup.spawn([&io_thread]() -> asio::awaitable<void> {
        io_thread = std::this_thread::get_id();
        co_return;
    });
    sup.wait();
    for (int i = 0; i < 2; ++i) {
        CAPTURE(i);
        factory_called_on = std::thread::id();
        if (i == 0)
            sup.spawn(stateless_factory);
        else
            sup.spawn([] { return stateless_factory(); });
        sup.wait();
        CHECK(factory_called_on.load() == io_thread.load());
        CHECK(factory_called_on.load() != std::this_thread::get_id());
    }
}

TEST_CASE("a void coroutine child keeps its lambda's captures alive after spawn returns") {
    warden::supervisor sup;
    std::string seen;
    {
        std::string long_text(100, 'x'); // on the heap, so a dangling read is visible to ASan
        sup.spawn([long_text, &seen]() -> asio::awaitable<void> {
            co_await sleep_for(1ms);
            seen = long_text;
        });
    } // the lambda passed to spawn is gone; only the copy warden keeps remains
    sup.wait();
    CHECK(seen == std::string(100, 'x'));
}

TEST_CASE("first failure cancels a coroutine sibling blocked on a timer") {
    warden::supervisor sup;
    std::atomic<bool> sibling_cancelled{false};
    std::latch sibling_waiting(1);
    sup.spawn([&]() -> asio::awaitable<void> {
        try {
            asio::steady_timer timer(co_await asio::this_coro::executor, 1h);
            sibling_waiting.count_down();
            co_await timer.async_wait(asio::use_awaitable);
        } catch (const boost::system::system_error& e) {
            sibling_cancelled = e.code() == asio::error::operation_aborted;
            throw;
        }
    });
    sup.spawn([&] {
        sibling_waiting.wait();
        throw std::runtime_error("boom");
    });
    CHECK_THROWS_AS(sup.wait_for(30s), std::runtime_error);
    CHECK(sibling_cancelled);
    CHECK(sup.failures().size() == 1); // the cancelled sibling is not a failure
}

TEST_CASE("first failure requests stop on a blocking sibling's token") {
    warden::supervisor sup{warden::supervisor_options{.threads = 2}};
    std::atomic<bool> stopped{false};
    std::latch sibling_running(1);
    sup.spawn([&](std::stop_token token) {
        sibling_running.count_down();
        stopped = block_until_stopped(token);
    });
    sup.spawn([&] {
        sibling_running.wait();
        throw std::logic_error("bad state");
    });
    CHECK_THROWS_AS(sup.wait_for(30s), std::logic_error);
    CHECK(stopped);
    CHECK(sup.stop_token().stop_requested());
}

TEST_CASE("later failures are kept and listed as suppressed in the first report") {
    warden::supervisor sup{warden::supervisor_options{.threads = 2}};
    sup.spawn(
        [](std::stop_token token) {
            block_until_stopped(token);
            throw std::runtime_error("second, while cancelled");
        },
        {.name = "late"});
    sup.spawn([] { throw std::runtime_error("first"); }, {.name = "early"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "first");
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        REQUIRE(report->suppressed.size() == 1);
        CHECK(report->suppressed[0] == "late (thread) failed: second, while cancelled");
        CHECK(report->to_string().find("later failures (1)") != std::string::npos);
    }
    auto all = sup.failures();
    REQUIRE(all.size() == 2);
    CHECK(all[0].child == "early");
    CHECK(all[1].child == "late");
    REQUIRE(sup.first_failure().has_value());
    CHECK(sup.first_failure()->child == "early");
}

TEST_CASE("collect policy runs every child to the end and throws failure_group") {
    warden::supervisor sup{
        warden::supervisor_options{.threads = 3, .policy = warden::policy::collect}};
    std::latch both_failed(2);
    auto survivor = sup.spawn([&] {
        both_failed.wait(); // runs on after both siblings failed
        return 42;
    });
    sup.spawn(
        [&] {
            both_failed.count_down();
            throw std::runtime_error("a");
        },
        {.name = "a"});
    sup.spawn(
        [&] {
            both_failed.count_down();
            throw 5;
        },
        {.name = "b"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const warden::failure_group& group) {
        REQUIRE(group.reports().size() == 2);
        std::string what = group.what();
        CHECK(what.find("a (thread) failed: a") != std::string::npos);
        CHECK(what.find("b (thread) failed: int") != std::string::npos);
    }
    CHECK(survivor.get() == 42);
    CHECK_NOTHROW(sup.spawn([] {}).get()); // collect does not close the supervisor
}

TEST_CASE("a child spawned from a thread child records its parent and spawn line") {
    warden::supervisor sup;
    unsigned line = 0;
    sup.spawn(
        [&] {
            line = __LINE__ + 1;
            sup.spawn([] { throw std::runtime_error("grandchild"); }, {.name = "grandchild"});
        },
        {.name = "parent"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        CHECK(report->child == "grandchild");
        CHECK(report->origin.parent == "parent");
        CHECK(report->origin.where.line() == line);
        CHECK(std::string(report->origin.where.file_name()).ends_with("test_supervisor.cpp"));
        CHECK(report->origin.supervisor == "supervisor");
    }
}

TEST_CASE("a child spawned from a coroutine child records its parent") {
    warden::supervisor sup;
    sup.spawn(
        [&]() -> asio::awaitable<void> {
            co_await sleep_for(1ms); // resumed through the supervisor's executor
            auto inner = sup.spawn(
                []() -> asio::awaitable<void> {
                    co_await sleep_for(1ms);
                    throw std::runtime_error("nested");
                },
                {.name = "inner"});
            co_await inner;
        },
        {.name = "outer"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const std::runtime_error&) {
        auto first = sup.first_failure();
        REQUIRE(first.has_value());
        CHECK(first->child == "inner");
        CHECK(first->origin.parent == "outer");
    }
}

TEST_CASE("join_timeout lists every running child with kind, run time and origin") {
    warden::supervisor sup;
    std::latch started(1);
    const unsigned line = __LINE__ + 1;
    sup.spawn(
        [&](std::stop_token token) {
            started.count_down();
            block_until_stopped(token);
        },
        {.name = "stuck"});
    started.wait();
    try {
        sup.wait_for(20ms);
        FAIL("no throw");
    } catch (const warden::join_timeout& e) {
        REQUIRE(e.running().size() == 1);
        CHECK(e.running()[0].name == "stuck");
        CHECK(e.running()[0].kind == warden::child_kind::thread);
        CHECK(e.running()[0].running_for >= 20ms);
        CHECK(e.running()[0].origin.where.line() == line);
        std::string what = e.what();
        CHECK(what.find("stuck (thread) running for") != std::string::npos);
        CHECK(what.find("test_supervisor.cpp:" + std::to_string(line)) != std::string::npos);
    }
    // The destructor cancels "stuck" and waits for it.
}

TEST_CASE("wait_until wakes at once on a failure, long before its poll interval") {
    warden::supervisor sup;
    std::latch waiting(1);
    sup.spawn([&] {
        waiting.wait();
        throw std::runtime_error("failed while parent waits");
    });
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(sup.wait_until(
                        [&] {
                            waiting.count_down();
                            return false;
                        },
                        60s, 30s),
                    std::runtime_error);
    // Without the wake-up the wait would only see the failure at the 30 s poll.
    CHECK(std::chrono::steady_clock::now() - start < 15s);
}

TEST_CASE("wait_until returns when its predicate holds after notify") {
    warden::supervisor sup;
    std::atomic<bool> ready{false};
    sup.spawn([&] {
        ready = true;
        sup.notify();
    });
    sup.wait_until([&] { return ready.load(); }, 60s, 1h);
    CHECK(ready);
}

TEST_CASE("wait_until throws join_timeout when its predicate never holds") {
    warden::supervisor sup;
    CHECK_THROWS_AS(sup.wait_until([] { return false; }, 20ms, 5ms), warden::join_timeout);
}

TEST_CASE("non-std exceptions are reported by type name and rethrown as themselves") {
    SUBCASE("int") {
        warden::supervisor sup;
        sup.spawn([] { throw 42; });
        try {
            sup.wait();
            FAIL("no throw");
        } catch (int value) {
            CHECK(value == 42);
            const auto* report = warden::report_for(std::current_exception());
            REQUIRE(report != nullptr);
            CHECK(report->what == "int");
        }
    }
    SUBCASE("custom type") {
        warden::supervisor sup;
        sup.spawn([]() -> asio::awaitable<void> {
            co_await sleep_for(1ms);
            throw custom_ns::not_an_exception{3};
        });
        try {
            sup.wait();
            FAIL("no throw");
        } catch (const custom_ns::not_an_exception& e) {
            CHECK(e.code == 3);
            auto first = sup.first_failure();
            REQUIRE(first.has_value());
            CHECK(first->what == "custom_ns::not_an_exception");
            CHECK(first->to_string().starts_with(
                first->child + " (coroutine) failed: custom_ns::not_an_exception"));
        }
    }
}

TEST_CASE("an exception with an empty what() is reported by its type") {
    struct silent_error : std::runtime_error {
        silent_error()
            : std::runtime_error("") {}
    };
    warden::supervisor sup;
    sup.spawn([] { throw silent_error(); }, {.name = "quiet"});
    CHECK_THROWS_AS(sup.wait(), silent_error);
    auto first = sup.first_failure();
    REQUIRE(first.has_value());
    CHECK(first->what.find("silent_error") != std::string::npos);
}

TEST_CASE("co_await join from inside a coroutine child of the same supervisor is an error") {
    warden::supervisor sup;
    sup.spawn([&]() -> asio::awaitable<void> { co_await sup.join(); });
    CHECK_THROWS_AS(sup.wait_for(30s), std::logic_error);
}

TEST_CASE("the destructor cancels running children and waits for them") {
    std::atomic<bool> thread_stopped{false};
    std::atomic<bool> coroutine_cancelled{false};
    {
        warden::supervisor sup;
        std::latch started(2);
        sup.spawn([&](std::stop_token token) {
            started.count_down();
            thread_stopped = block_until_stopped(token);
        });
        sup.spawn([&]() -> asio::awaitable<void> {
            started.count_down();
            try {
                co_await sleep_for(1h);
            } catch (const boost::system::system_error&) {
                coroutine_cancelled = true;
            }
        });
        started.wait();
    }
    CHECK(thread_stopped);
    CHECK(coroutine_cancelled);
}

TEST_CASE("no thread is left after the supervisor is destroyed") {
    const auto before = warden_test::thread_count_before_threads();
    {
        warden::supervisor sup{warden::supervisor_options{.threads = 4}};
        for (int i = 0; i < 8; ++i)
            sup.spawn([] {});
        sup.spawn([]() -> asio::awaitable<void> { co_return; });
        sup.wait();
        CHECK(warden_test::thread_count() > before);
    }
    CHECK(warden_test::thread_count_once_settled(before) == before);
}

TEST_CASE("spawning on a cancelled or failed supervisor throws supervisor_closed") {
    SUBCASE("cancelled") {
        warden::supervisor sup;
        sup.cancel();
        int ran = 0;
        CHECK_THROWS_AS(sup.spawn([&] { ++ran; }), warden::supervisor_closed);
        sup.wait();
        CHECK(ran == 0);
        CHECK(sup.stop_token().stop_requested());
    }
    SUBCASE("failed") {
        warden::supervisor sup;
        sup.spawn([] { throw std::runtime_error("x"); });
        CHECK_THROWS_AS(sup.wait(), std::runtime_error);
        CHECK_THROWS_AS(sup.spawn([] {}), warden::supervisor_closed);
    }
}

TEST_CASE("under collect, each wait's failure_group holds only failures not thrown before") {
    warden::supervisor sup{{.policy = warden::policy::collect}};
    for (int round = 1; round <= 3; ++round) {
        CAPTURE(round);
        sup.spawn([round] { throw std::runtime_error("round " + std::to_string(round)); });
        try {
            sup.wait();
            FAIL("wait() returned");
        } catch (const warden::failure_group& group) {
            REQUIRE(group.reports().size() == 1);
            CHECK(group.reports()[0].what == "round " + std::to_string(round));
        }
    }
    CHECK(sup.failures().size() == 3); // all kept; each thrown once
}

TEST_CASE("a failure is thrown once: a second join returns") {
    warden::supervisor sup;
    sup.spawn([] { throw std::runtime_error("once"); });
    CHECK_THROWS_AS(sup.wait(), std::runtime_error);
    CHECK_NOTHROW(sup.wait());
    CHECK(sup.failure_observed());
}

TEST_CASE("join from inside a child of the same supervisor is an error, not a deadlock") {
    warden::supervisor sup;
    sup.spawn([&] { sup.wait(); });
    CHECK_THROWS_AS(sup.wait_for(30s), std::logic_error);
}

TEST_CASE("co_await join on the caller's io_context") {
    asio::io_context io;
    warden::supervisor sup{io.get_executor()};
    std::exception_ptr joined;
    bool returned = false;
    sup.spawn([]() -> asio::awaitable<int> {
        co_await sleep_for(1ms);
        co_return 1;
    });
    sup.spawn([] { return 2; });
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await sup.join();
            returned = true;
        },
        [&](std::exception_ptr e) { joined = e; });
    io.run();
    CHECK_FALSE(joined);
    CHECK(returned);
}

TEST_CASE("co_await join throws the first failure, after the siblings finish") {
    asio::io_context io;
    warden::supervisor sup{io.get_executor()};
    bool sibling_done = false;
    sup.spawn([&]() -> asio::awaitable<void> {
        try {
            co_await sleep_for(1h);
        } catch (...) {
            sibling_done = true;
            throw;
        }
    });
    sup.spawn([]() -> asio::awaitable<void> {
        co_await sleep_for(1ms);
        throw std::invalid_argument("bad");
    });
    auto joined = asio::co_spawn(io, sup.join(), asio::use_future);
    io.run();
    CHECK_THROWS_AS(joined.get(), std::invalid_argument);
    CHECK(sibling_done);
}

// join hands the failure to its own frame instead of throwing it (src/supervisor.cpp,
// end_with): the caller's co_await must still throw the child's very exception object, skip
// the rest of the caller's statement sequence, and under collect throw the failure_group.
TEST_CASE("co_await join throws the child's own exception object, and the failure_group under "
          "collect") {
    struct marked_error : std::runtime_error {
        using std::runtime_error::runtime_error;
    };
    asio::io_context io;
    const void* thrown = nullptr;
    const void* caught = nullptr;
    bool ran_past_join = false;
    {
        warden::supervisor sup{io.get_executor()};
        sup.spawn([&]() -> asio::awaitable<void> {
            co_await sleep_for(1ms);
            marked_error error("marked");
            try {
                throw error;
            } catch (const marked_error& e) {
                thrown = &e;
                throw;
            }
        });
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                try {
                    co_await sup.join();
                    ran_past_join = true;
                } catch (const marked_error& e) {
                    caught = &e;
                }
            },
            asio::detached);
        io.run();
        io.restart();
    }
    CHECK_FALSE(ran_past_join);
    REQUIRE(caught != nullptr);
    CHECK(caught == thrown);

    warden::supervisor sup{io.get_executor(), {.policy = warden::policy::collect}};
    sup.spawn([]() -> asio::awaitable<void> {
        co_await sleep_for(1ms);
        throw std::runtime_error("first");
    });
    sup.spawn([]() -> asio::awaitable<void> {
        co_await sleep_for(2ms);
        throw std::runtime_error("second");
    });
    auto joined = asio::co_spawn(io, sup.join(), asio::use_future);
    io.run();
    try {
        joined.get();
        FAIL("join returned");
    } catch (const warden::failure_group& group) {
        CHECK(group.reports().size() == 2);
    }
}

TEST_CASE("children() lists live children") {
    warden::supervisor sup;
    std::latch started(1);
    sup.spawn(
        [&](std::stop_token token) {
            started.count_down();
            block_until_stopped(token);
        },
        {.name = "lister"});
    started.wait();
    auto live = sup.children();
    REQUIRE(live.size() == 1);
    CHECK(live[0].name == "lister");
    CHECK(live[0].state == warden::child_state::running);
    sup.cancel();
    sup.wait();
    CHECK(sup.children().empty());
}

TEST_CASE("a child straggling past cancel_grace is named in the report") {
    warden::supervisor sup{warden::supervisor_options{.threads = 2, .cancel_grace = 10ms}};
    std::latch release(1);
    std::latch straggler_started(1);
    sup.spawn(
        [&] {
            straggler_started.count_down();
            release.wait(); // ignores cancellation
        },
        {.name = "straggler"});
    sup.spawn([&] {
        straggler_started.wait();
        throw std::runtime_error("fail");
    });
    try {
        sup.wait();
        FAIL("no throw");
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        REQUIRE(report->stragglers.size() == 1);
        CHECK(report->stragglers[0].starts_with("straggler (thread)"));
    }
    release.count_down();
}

TEST_CASE("the spawn stack is captured under capture::stacktrace and not under location") {
    SUBCASE("stacktrace") {
        warden::supervisor sup;
        sup.spawn([] { throw std::runtime_error("x"); });
        CHECK_THROWS(sup.wait());
        auto first = sup.first_failure();
        REQUIRE(first.has_value());
        CHECK(first->origin.stacktrace.find("test_supervisor.cpp") != std::string::npos);
        CHECK(first->to_string().find("spawn stack:") != std::string::npos);
    }
    SUBCASE("location") {
        warden::supervisor sup{warden::supervisor_options{.capture = warden::capture::location}};
        sup.spawn([] { throw std::runtime_error("x"); });
        CHECK_THROWS(sup.wait());
        CHECK(sup.first_failure()->origin.stacktrace.empty());
    }
}

TEST_CASE("the origin records the running test's name") {
    warden::supervisor sup;
    sup.spawn([] { throw std::runtime_error("x"); });
    CHECK_THROWS(sup.wait());
    CHECK(sup.first_failure()->origin.test == "the origin records the running test's name");
}

TEST_CASE("wait_until throws a failure recorded while its predicate ran, even if it is true") {
    warden::supervisor sup;
    std::latch go(1);
    sup.spawn([&] {
        go.wait();
        throw std::runtime_error("failed during pred");
    });
    CHECK_THROWS_AS(sup.wait_until(
                        [&] {
                            go.count_down();
                            while (sup.failures().empty())
                                std::this_thread::yield();
                            return true; // true only because the failing child is done
                        },
                        30s),
                    std::runtime_error);
}

TEST_CASE("under collect, a failure thrown by wait_until is not thrown again by join") {
    warden::supervisor sup{warden::supervisor_options{.policy = warden::policy::collect}};
    sup.spawn([] { throw std::runtime_error("early"); }, {.name = "early"});
    CHECK_THROWS_AS(sup.wait_until([] { return false; }, 30s), std::runtime_error);
    sup.spawn([] { throw std::runtime_error("late"); }, {.name = "late"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const warden::failure_group& group) {
        REQUIRE(group.reports().size() == 1);
        CHECK(group.reports()[0].child == "late");
    }
    CHECK_NOTHROW(sup.wait());
}

TEST_CASE("blocking waits on the thread that runs the supervisor's io_context are refused") {
    asio::io_context io;
    warden::supervisor sup{io.get_executor()};
    auto coroutine = sup.spawn([]() -> asio::awaitable<int> { co_return 1; });
    auto& process = sup.spawn_process({.argv = {"sh", "-c", "echo ready"}});
    // A strand of the same io_context: its handlers run on that thread too.
    asio::strand<asio::io_context::executor_type> strand(io.get_executor());
    warden::supervisor on_strand{strand};
    int refused = 0;
    auto refuses = [&](auto&& call) {
        try {
            call();
        } catch (const std::logic_error& e) {
            refused += std::string(e.what()).find("use co_await") != std::string::npos;
        }
    };
    asio::post(io, [&] {
        refuses([&] { sup.wait(); });
        refuses([&] { sup.wait_for(1s); });
        refuses([&] { sup.wait_until([] { return false; }, 1s); });
        refuses([&] { coroutine.get(); });
        refuses([&] { process.wait_for_line_blocking("ready", 1s); });
    });
    asio::post(strand, [&] { refuses([&] { on_strand.wait(); }); });
    // The same from inside a coroutine of another supervisor on that io_context.
    warden::supervisor other{io.get_executor()};
    other.spawn([&]() -> asio::awaitable<void> {
        try {
            sup.wait();
        } catch (const std::logic_error&) {
            ++refused;
        }
        co_return;
    });
    io.run();
    CHECK(refused == 7);
    CHECK(coroutine.get() == 1);
}

TEST_CASE("ten thousand nested coroutine spawns do not overflow the stack") {
    // The default capture too: each spawn then walks the (deep) stack it is made on.
    for (const auto capture : {warden::capture::location, warden::capture::stacktrace}) {
        CAPTURE(static_cast<int>(capture));
        warden::supervisor sup{{.capture = capture}};
        constexpr int depth = 10000;
        std::atomic<int> deepest{0};
        std::function<asio::awaitable<void>(int)> level = [&](int n) -> asio::awaitable<void> {
            deepest = std::max(deepest.load(), n);
            if (n < depth)
                sup.spawn(level(n + 1));
            co_return;
        };
        sup.spawn(level(1));
        sup.wait();
        CHECK(deepest.load() == depth);
    }
}

TEST_CASE("co_await join cancelled by its parent cancels the children on io_context{1}") {
    asio::io_context io{1};
    warden::supervisor sup{io.get_executor()};
    int cancelled_children = 0;
    for (int i = 0; i < 3; ++i)
        sup.spawn([&]() -> asio::awaitable<void> {
            try {
                co_await sleep_for(1h);
            } catch (const boost::system::system_error&) {
                ++cancelled_children;
                throw;
            }
        });
    asio::cancellation_signal parent_cancel;
    std::exception_ptr parent_error;
    bool parent_ended = false;
    asio::co_spawn(io, sup.join(),
                   asio::bind_cancellation_slot(parent_cancel.slot(), [&](std::exception_ptr e) {
                       parent_error = e;
                       parent_ended = true;
                   }));
    asio::post(io, [&] { parent_cancel.emit(asio::cancellation_type::terminal); });
    io.run();
    CHECK(parent_ended);
    CHECK(cancelled_children == 3);
    CHECK(sup.children().empty());
    REQUIRE(parent_error);
    CHECK_THROWS_AS(std::rethrow_exception(parent_error), boost::system::system_error);
}

TEST_CASE("a failure recorded before the parent's cancellation is what join throws") {
    asio::io_context io{1};
    warden::supervisor sup{io.get_executor()};
    std::latch release(1);
    std::latch straggler_started(1);
    sup.spawn([&] {
        straggler_started.count_down();
        release.wait(); // ignores cancellation until released
    });
    straggler_started.wait();
    sup.spawn([]() -> asio::awaitable<void> {
        throw std::invalid_argument("the real cause");
        co_return;
    });
    asio::cancellation_signal parent_cancel;
    std::exception_ptr parent_error;
    asio::co_spawn(io, sup.join(),
                   asio::bind_cancellation_slot(parent_cancel.slot(),
                                                [&](std::exception_ptr e) { parent_error = e; }));
    // Once the failure is recorded (the join is waiting for the straggler), the parent is
    // cancelled, then the straggler let go.
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            while (!sup.first_failure())
                co_await sleep_for(1ms);
            parent_cancel.emit(asio::cancellation_type::terminal);
            release.count_down();
        },
        asio::detached);
    io.run();
    REQUIRE(parent_error);
    CHECK_THROWS_AS(std::rethrow_exception(parent_error), std::invalid_argument);
}

TEST_CASE("nested: an outer failure reaches the leaves of an inner supervisor on the child's "
          "executor") {
    for (bool awaits_inner_join : {false, true}) {
        CAPTURE(awaits_inner_join);
        std::atomic<bool> leaf_cancelled{false};
        std::latch leaf_started(1);
        {
            warden::supervisor outer{{.name = "outer"}};
            outer.spawn([&]() -> asio::awaitable<void> {
                // Not in one statement with co_await: g++ 12 destroys the options temporary
                // twice (docs/decisions.md).
                auto executor = co_await asio::this_coro::executor;
                warden::supervisor inner{executor, {.name = "inner"}};
                inner.spawn([&]() -> asio::awaitable<void> {
                    leaf_started.count_down();
                    try {
                        co_await sleep_for(1h);
                    } catch (...) {
                        leaf_cancelled = true;
                        throw;
                    }
                });
                if (awaits_inner_join)
                    co_await inner.join();
                else
                    co_await sleep_for(1h);
            });
            leaf_started.wait();
            outer.spawn([] { throw std::runtime_error("outer failure"); });
            CHECK_THROWS_AS(outer.wait(), std::runtime_error);
            CHECK(leaf_cancelled);
        }
    }
}

TEST_CASE("nested: an outer failure cancels an inner supervisor waited for in a thread child") {
    warden::supervisor outer{{.name = "outer"}};
    std::latch leaf_started(1);
    std::atomic<bool> leaf_stopped{false};
    outer.spawn(
        [&] {
            warden::supervisor inner{{.name = "inner"}};
            inner.spawn([&](std::stop_token stop) {
                leaf_started.count_down();
                leaf_stopped = block_until_stopped(stop);
            });
            inner.wait(); // not interruptible by itself: only the inner children's end ends it
        },
        {.name = "middle"});
    leaf_started.wait();
    outer.spawn([] { throw std::runtime_error("outer failure"); });
    try {
        outer.wait();
        FAIL("no failure");
    } catch (const std::runtime_error&) {
        CHECK(warden::report_for(std::current_exception())->stragglers.empty());
    }
    CHECK(leaf_stopped);
}

TEST_CASE("nested: a supervisor made in a cancelled child starts closed") {
    warden::supervisor outer;
    std::latch started(1);
    std::latch cancelled(1);
    std::atomic<bool> refused{false};
    outer.spawn([&](std::stop_token stop) {
        started.count_down();
        cancelled.wait();
        REQUIRE(stop.stop_requested());
        warden::supervisor inner;
        try {
            inner.spawn([] {});
        } catch (const warden::supervisor_closed&) {
            refused = true;
        }
    });
    started.wait();
    outer.cancel();
    cancelled.count_down();
    CHECK_NOTHROW(outer.wait());
    CHECK(refused);
}

TEST_CASE("nested: an inner supervisor on a strand, destroyed in its cancelled child, does not "
          "end the program") {
    asio::io_context io;
    auto strand = asio::make_strand(io);
    warden::supervisor outer{strand};
    bool leaf_cancelled = false;
    bool leaf_started = false;
    outer.spawn([&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        warden::supervisor inner{executor};
        inner.spawn([&]() -> asio::awaitable<void> {
            leaf_started = true;
            try {
                co_await sleep_for(1h);
            } catch (...) {
                leaf_cancelled = true;
                throw;
            }
        });
        co_await sleep_for(1h); // not the inner join: the inner supervisor is destroyed here
    });
    asio::co_spawn(
        strand,
        [&]() -> asio::awaitable<void> {
            while (!leaf_started)
                co_await sleep_for(1ms);
            outer.cancel();
        },
        asio::detached);
    io.run();
    CHECK(leaf_cancelled);
    CHECK(outer.children().empty());
}

// Coroutine children spawned from a thread other than the supervisor's own I/O thread are
// started there in batches (src/executor_host.hpp). A first child that holds the I/O thread
// keeps the later starts queued, so each test below sees them queued.
namespace {

struct held_io_thread {
    std::latch running{1};
    std::latch release{1};

    // Spawns the child that holds the I/O thread, and returns once it does.
    void hold(warden::supervisor& sup) {
        sup.spawn([this]() -> asio::awaitable<void> {
            running.count_down();
            release.wait(); // blocks the I/O thread itself, on purpose
            co_return;
        });
        running.wait();
    }
};

} // namespace

TEST_CASE("own I/O thread: coroutine children spawned from one thread start in spawn order") {
    warden::supervisor sup;
    held_io_thread io_thread;
    io_thread.hold(sup);
    constexpr int count = 2000;
    std::vector<int> started; // written on the I/O thread only
    for (int i = 0; i < count; ++i)
        sup.spawn([&started, i]() -> asio::awaitable<void> {
            started.push_back(i);
            co_return;
        });
    io_thread.release.count_down();
    sup.wait_for(60s);
    REQUIRE(started.size() == count);
    for (int i = 0; i < count; ++i)
        REQUIRE(started[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("own I/O thread: queued starts take turns with the thread's other handlers") {
    warden::supervisor sup;
    held_io_thread io_thread;
    io_thread.hold(sup);
    constexpr std::size_t count = 2000;
    std::vector<int> started; // written on the I/O thread only
    for (std::size_t i = 0; i < count; ++i)
        sup.spawn([&started]() -> asio::awaitable<void> {
            started.push_back(0);
            co_return;
        });
    // Queued behind every start: with the starts run in one go, it would find them all done.
    std::promise<std::size_t> started_before_handler;
    asio::post(sup.get_executor(), [&] { started_before_handler.set_value(started.size()); });
    io_thread.release.count_down();
    sup.wait_for(60s);
    REQUIRE(started.size() == count);
    CHECK(started_before_handler.get_future().get() < count);
}

TEST_CASE("own I/O thread: a cancel that comes while the starts are queued ends every child") {
    warden::supervisor sup;
    held_io_thread io_thread;
    io_thread.hold(sup);
    constexpr int count = 2000;
    std::atomic<int> aborted{0};
    std::vector<warden::task<void>> tasks;
    for (int i = 0; i < count; ++i)
        tasks.push_back(sup.spawn([&aborted]() -> asio::awaitable<void> {
            try {
                co_await sleep_for(1h);
            } catch (const boost::system::system_error& e) {
                if (e.code() == asio::error::operation_aborted)
                    ++aborted;
                throw;
            }
        }));
    sup.cancel();
    io_thread.release.count_down();
    // A cancel lost on the way (the children not started when it came) leaves them asleep for
    // an hour: join_timeout.
    CHECK_NOTHROW(sup.wait_for(60s));
    CHECK(aborted == count);
    CHECK(sup.children().empty());
    CHECK(sup.failures().empty());
}

TEST_CASE("own I/O thread: coroutine spawns from several threads at once all start and end") {
    warden::supervisor sup{warden::supervisor_options{.threads = 3}};
    constexpr int per_thread = 3000;
    std::atomic<int> ran{0};
    // The spawning threads are thread children: each spawn comes from a pool thread.
    for (int t = 0; t < 3; ++t)
        sup.spawn([&sup, &ran] {
            for (int i = 0; i < per_thread; ++i)
                sup.spawn([&ran]() -> asio::awaitable<void> {
                    ++ran;
                    co_return;
                });
        });
    sup.wait_for(60s);
    CHECK(ran == 3 * per_thread);
    CHECK(sup.children().empty());
}
