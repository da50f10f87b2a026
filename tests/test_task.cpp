#include <warden/task.hpp>

#include <atomic>
#include <chrono>
#include <latch>
#include <stdexcept>
#include <string>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/system_error.hpp>

#include <doctest/doctest.h>

#include <warden/supervisor.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE("task::get returns a blocking child's value") {
    warden::supervisor sup;
    auto t = sup.spawn([] { return std::string("value"); }, {.name = "producer"});
    CHECK(t.get() == "value");
    CHECK(t.done());
    CHECK(t.name() == "producer");
}

TEST_CASE("task::get rethrows that child's own failure") {
    warden::supervisor sup{warden::supervisor_options{.policy = warden::policy::collect}};
    auto t = sup.spawn([]() -> int { throw std::domain_error("no value"); });
    CHECK_THROWS_AS(t.get(), std::domain_error);
    CHECK_THROWS_AS(sup.wait(), warden::failure_group);
}

TEST_CASE("co_await task yields a coroutine child's value") {
    asio::io_context io;
    warden::supervisor sup{io.get_executor()};
    auto result = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<int> {
            auto a = sup.spawn([]() -> asio::awaitable<int> { co_return 20; });
            auto b = sup.spawn([] { return 22; }); // a thread child awaited from a coroutine
            // Two statements: g++ 12 gives `co_await a + co_await b` the second value twice.
            const int from_coroutine = co_await a;
            const int from_thread = co_await b;
            co_return from_coroutine + from_thread;
        },
        asio::use_future);
    io.run();
    CHECK(result.get() == 42);
}

TEST_CASE("co_await task rethrows the child's exception") {
    asio::io_context io;
    warden::supervisor sup{io.get_executor(), {.policy = warden::policy::collect}};
    auto result = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            co_await sup.spawn([]() -> asio::awaitable<void> {
                throw std::length_error("too long");
                co_return;
            });
        },
        asio::use_future);
    io.run();
    CHECK_THROWS_AS(result.get(), std::length_error);
}

TEST_CASE("task::cancel stops only that child") {
    warden::supervisor sup;
    std::latch started(1);
    auto t = sup.spawn([&](std::stop_token token) {
        started.count_down();
        while (!token.stop_requested())
            std::this_thread::yield();
        return token.stop_requested();
    });
    auto other = sup.spawn([] { return 1; });
    started.wait();
    t.cancel();
    CHECK(t.get());
    CHECK(other.get() == 1);
    CHECK_NOTHROW(sup.wait());
}

TEST_CASE("a task waiting for itself is an error") {
    warden::supervisor sup;
    std::latch have_handle(1);
    warden::task<void> self;
    self = sup.spawn([&] {
        have_handle.wait();
        self.get();
    });
    have_handle.count_down();
    CHECK_THROWS_AS(sup.wait(), std::logic_error);
}

// g++ 12 destroys temporaries twice when they are call arguments inside a co_await
// expression; spawn has no defaulted class-type parameter so that this form stays safe
// (the sanitizer build catches a regression).
TEST_CASE("co_await on a task spawned in the same expression") {
    asio::io_context io;
    warden::supervisor sup{io.get_executor()};
    auto result = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<int> {
            int a = co_await sup.spawn([]() -> asio::awaitable<int> { co_return 1; });
            int b = co_await sup.spawn([] { return 2; });
            co_return a + b;
        },
        asio::use_future);
    io.run();
    CHECK(result.get() == 3);
}

TEST_CASE("an empty task throws logic_error instead of dereferencing nothing") {
    warden::task<int> empty;
    CHECK_FALSE(empty.valid());
    CHECK_THROWS_AS(empty.get(), std::logic_error);
    CHECK_THROWS_AS(empty.done(), std::logic_error);
    CHECK_THROWS_AS(empty.name(), std::logic_error);
    CHECK_THROWS_AS(empty.cancel(), std::logic_error);
    asio::io_context io;
    auto awaited = asio::co_spawn(
        io, [&]() -> asio::awaitable<int> { co_return co_await empty; }, asio::use_future);
    io.run();
    CHECK_THROWS_AS(awaited.get(), std::logic_error);

    warden::supervisor sup;
    auto t = sup.spawn([] { return 1; });
    auto moved = std::move(t);
    CHECK(moved.valid());
    CHECK_FALSE(t.valid()); // NOLINT(bugprone-use-after-move): the moved-from state is the test
    CHECK_THROWS_AS(t.get(), std::logic_error);
    CHECK(moved.get() == 1);
}

namespace {

// One pool thread: the waiting child holds it, and the child it waits for is queued behind it.
// Only the waiter's cancellation can end that. Returns once the waiter is in get();
// `get_ended_by_cancel` tells how get() ended.
void wait_for_a_child_queued_behind(warden::supervisor& sup,
                                    std::atomic<bool>& get_ended_by_cancel) {
    std::latch waiting(1);
    sup.spawn([&] {
        auto queued = sup.spawn([] { return 1; });
        waiting.count_down();
        try {
            queued.get();
        } catch (const boost::system::system_error& e) {
            get_ended_by_cancel = e.code() == asio::error::operation_aborted;
            throw;
        }
    });
    waiting.wait();
}

} // namespace

TEST_CASE("bad input: task::get in a thread child on a full pool ends when cancelled") {
    warden::supervisor sup{{.threads = 1}};
    std::atomic<bool> get_ended_by_cancel{false};
    wait_for_a_child_queued_behind(sup, get_ended_by_cancel);
    CHECK_THROWS_AS(sup.wait_for(20ms), warden::join_timeout);
    sup.cancel();
    CHECK_NOTHROW(sup.wait());
    CHECK(get_ended_by_cancel);
    CHECK(sup.failures().empty());
}

TEST_CASE("bad input: task::get in a thread child on a full pool ends on a sibling's failure and "
          "on the supervisor's destruction") {
    for (const bool by_failure : {true, false}) {
        CAPTURE(by_failure);
        std::atomic<bool> get_ended_by_cancel{false};
        {
            warden::supervisor sup{{.threads = 1}};
            wait_for_a_child_queued_behind(sup, get_ended_by_cancel);
            if (by_failure) {
                // A coroutine: it runs on the I/O thread, not behind the waiter on the pool.
                sup.spawn([]() -> asio::awaitable<void> {
                    throw std::runtime_error("sibling");
                    co_return;
                });
                CHECK_THROWS_AS(sup.wait(), std::runtime_error);
            }
        }
        CHECK(get_ended_by_cancel);
    }
}
