// warden::catch2's own suite, in Catch2, one process per test (catch_discover_tests). The
// failing cases (a failure at the spawn's line, the watchdog, the leak check catching a stray
// process or thread, the report file) are test_frameworks.cpp's, which runs
// tests/programs/catch2_program.cpp.
#define CATCH_CONFIG_MAIN
#include <warden/catch2.hpp>

#include <stdexcept>
#include <string>
#include <thread>

namespace asio = boost::asio;

TEST_CASE_METHOD(warden::catch2::fixture, "every origin names the running test") {
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); });
    try {
        sup.wait();
        FAIL("wait() did not throw the child's failure");
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        CHECK(report->origin.test == "every origin names the running test");
        CHECK(std::string(report->origin.where.file_name()).ends_with("test_catch2.cpp"));
    }
}

WARDEN_CATCH_TEST_CASE("a coroutine body awaits its children", "[coroutine]") {
    auto answer = sup.spawn([]() -> asio::awaitable<int> { co_return 42; });
    const int value = co_await answer;
    CHECK(value == 42);
    CHECK(warden::current_test() == "a coroutine body awaits its children");
    co_await sup.join();
}

// Under leak policy fail, the threads that the test's supervisor, a second supervisor and the
// test itself started and ended are no leak: this test fails if the leak check reports one.
TEST_CASE_METHOD(warden::catch2::fixture, "threads that ended and warden's own are no leak") {
    thread_leaks = warden::leak_policy::fail;
    process_leaks = warden::leak_policy::fail;
    sup.spawn([] {}).get();
    sup.spawn_process({.argv = {"true"}});
    warden::supervisor other({.name = "other"});
    other.spawn([] {});
    other.wait();
    std::thread([] {}).join();
}

TEST_CASE("a test without the fixture has its name set too") {
    CHECK(warden::current_test() == "a test without the fixture has its name set too");
}
