// Uses warden::catch2 only: the fixture and WARDEN_CATCH_TEST_CASE from <warden/catch2.hpp>.
#define CATCH_CONFIG_MAIN
#include <warden/catch2.hpp>

#include <stdexcept>
#include <string>

TEST_CASE_METHOD(warden::catch2::fixture, "a child's failure reaches the test with its origin") {
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); });
    try {
        sup.wait();
        FAIL("wait() did not throw the child's failure");
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        CHECK(report->origin.test == "a child's failure reaches the test with its origin");
    }
}

WARDEN_CATCH_TEST_CASE("a coroutine test body awaits its children") {
    auto answer = sup.spawn([]() -> boost::asio::awaitable<int> { co_return 42; });
    const int value = co_await answer;
    CHECK(value == 42);
    co_await sup.join();
}
