// Uses warden::doctest only: the fixture and WARDEN_TEST_CASE from <warden/doctest.hpp>.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <warden/doctest.hpp>

#include <stdexcept>
#include <string>

TEST_CASE_FIXTURE(warden::doctest::fixture, "a child's failure reaches the test with its origin") {
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); });
    try {
        sup.wait();
        FAIL("wait() did not throw the child's failure");
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        CHECK(report->origin.test == "a child's failure reaches the test with its origin");
        CHECK(std::string(report->origin.where.file_name()).ends_with("test_consume.cpp"));
    }
}

WARDEN_TEST_CASE("a coroutine test body awaits its children") {
    auto answer = sup.spawn([]() -> boost::asio::awaitable<int> { co_return 42; });
    CHECK(co_await answer == 42);
    co_await sup.join();
}
