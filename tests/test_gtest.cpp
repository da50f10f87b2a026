// warden::gtest's own suite, in GoogleTest, one process per test (gtest_discover_tests). The
// failing cases (a failure at the spawn's line, the watchdog, the leak check catching a stray
// process or thread, the report file) are test_frameworks.cpp's, which runs
// tests/programs/gtest_program.cpp.
#include <warden/gtest.hpp>

#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Fixture : warden::gtest::fixture {};

TEST_F(Fixture, EveryOriginNamesTheRunningTest) {
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); });
    try {
        sup.wait();
        ADD_FAILURE() << "wait() did not throw the child's failure";
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        ASSERT_NE(report, nullptr);
        EXPECT_EQ(report->origin.test, "Fixture.EveryOriginNamesTheRunningTest");
        EXPECT_TRUE(std::string(report->origin.where.file_name()).ends_with("test_gtest.cpp"));
    }
}

WARDEN_TEST(Fixture, ACoroutineBodyAwaitsItsChildren) {
    auto answer = sup.spawn([]() -> asio::awaitable<int> { co_return 42; });
    const int value = co_await answer;
    EXPECT_EQ(value, 42);
    EXPECT_EQ(warden::current_test(), "Fixture.ACoroutineBodyAwaitsItsChildren");
    co_await sup.join();
}

// Under leak policy fail, the threads that the test's supervisor, a second supervisor and the
// test itself started and ended are no leak: this test fails if the leak check reports one.
TEST_F(Fixture, ThreadsThatEndedAndWardensOwnAreNoLeak) {
    thread_leaks = warden::leak_policy::fail;
    process_leaks = warden::leak_policy::fail;
    sup.spawn([] {}).get();
    sup.spawn_process({.argv = {"true"}});
    warden::supervisor other({.name = "other"});
    other.spawn([] {});
    other.wait();
    std::thread([] {}).join();
}

TEST(Plain, TheTestNameIsSetWithoutTheFixture) {
    // A test without the fixture still has its name set: the listener is the header's.
    EXPECT_EQ(warden::current_test(), "Plain.TheTestNameIsSetWithoutTheFixture");
}
