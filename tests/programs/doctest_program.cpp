// Test cases that fail on purpose, run one by one from tests/test_doctest.cpp.
// Lines marked SPAWN_* are found by that test to check the reported file:line.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <warden/doctest.hpp>

#include <condition_variable>
#include <latch>
#include <mutex>
#include <stdexcept>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

TEST_CASE_FIXTURE(warden::doctest::fixture, "passes") {
    auto t = sup.spawn([] { return 1; });
    CHECK(t.get() == 1);
}

TEST_CASE_FIXTURE(warden::doctest::fixture, "child fails after the body returned") {
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); }, // SPAWN_A
              {.name = "installer"});
}

TEST_CASE_FIXTURE(warden::doctest::fixture, "body waits and a child fails") {
    sup.spawn([] { throw std::runtime_error("service died"); }, {.name = "service"}); // SPAWN_B
    sup.wait_until([] { return false; }, 60s);
}

TEST_CASE_FIXTURE(warden::doctest::fixture, "body blocked where warden cannot reach") {
    warden::doctest::unobserved_grace = 200ms;
    sup.spawn([] { throw std::runtime_error("unobserved failure"); }, {.name = "lost"}); // SPAWN_C
    std::latch never(1);
    never.wait(); // nothing counts it down: the watchdog must end the binary
}

TEST_CASE_FIXTURE(warden::doctest::fixture, "a child outlives the join deadline") {
    warden::doctest::join_deadline = 50ms;
    sup.spawn( // SPAWN_E
        [](std::stop_token token) {
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock lock(m);
            cv.wait(lock, token, [] { return false; });
        },
        {.name = "sleeper"});
}

TEST_CASE_FIXTURE(warden::doctest::fixture, "REQUIRE fails inside a child") {
    sup.spawn([] { REQUIRE(1 == 2); });
}

TEST_CASE_FIXTURE(warden::doctest::fixture, "CHECK fails inside a child") {
    sup.spawn([] { CHECK(3 == 4); }).get();
}

WARDEN_TEST_CASE("coroutine body is cancelled when a child fails") {
    // Not the watchdog's test: give slow (sanitizer) builds all the time they need.
    warden::doctest::unobserved_grace = 60s;
    sup.spawn([]() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
        co_await t.async_wait(asio::use_awaitable);
        throw std::runtime_error("coroutine child failed"); // SPAWN_D is the spawn above
    });
    asio::steady_timer forever(co_await asio::this_coro::executor, 1h);
    co_await forever.async_wait(asio::use_awaitable);
    FAIL("the body's pending co_await was not cancelled");
}

WARDEN_TEST_CASE("coroutine body passes") {
    auto value = co_await sup.spawn([]() -> asio::awaitable<int> { co_return 5; });
    CHECK(value == 5);
    co_await sup.join();
}
