#pragma once

// doctest integration: one include gives
//   - the running test's name in every origin (a listener, no user code);
//   - warden::doctest::fixture with member `sup`, joined when the body returns;
//   - WARDEN_TEST_CASE, whose body is a coroutine cancelled when a child fails;
//   - the unobserved-failure watchdog: a child failure the body never observes (it is
//     blocked where warden cannot interrupt it) prints its report and ends the test binary
//     after unobserved_grace, instead of hanging until some later timeout;
//   - the leak check and the report files of <warden/fixtures.hpp>.
// What the three framework adapters share is include/warden/detail/test_fixture.hpp.

#include <string>

#include <doctest/doctest.h>

#include <warden/detail/test_fixture.hpp>
#include <warden/fixtures.hpp>
#include <warden/warden.hpp>

// doctest's macros name `doctest::`, which inside namespace warden would mean
// warden::doctest; so they are used from here.
namespace warden_doctest_macros {
inline void fail_at(const char* file, unsigned line, const std::string& text) {
    ADD_FAIL_CHECK_AT(file, static_cast<int>(line), text);
}
inline void fail(const std::string& text) {
    FAIL_CHECK(text);
}
inline void warn(const std::string& text) {
    MESSAGE(text);
}
inline constexpr warden::detail::test_framework framework{&fail_at, &fail, &warn,
                                                          &warden::detail::unwinding_since};
} // namespace warden_doctest_macros

namespace warden::doctest {

using fixtures::join_deadline;
using fixtures::unobserved_exit_code;
using fixtures::unobserved_grace;

namespace detail {

struct test_name_listener : ::doctest::IReporter {
    explicit test_name_listener(const ::doctest::ContextOptions&) {}
    void report_query(const ::doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const ::doctest::TestRunStats&) override {}
    void test_case_start(const ::doctest::TestCaseData& test) override {
        warden::set_current_test(test.m_name);
    }
    void test_case_reenter(const ::doctest::TestCaseData&) override {}
    void test_case_end(const ::doctest::CurrentTestCaseStats&) override {
        warden::set_current_test({});
    }
    void test_case_exception(const ::doctest::TestCaseException&) override {}
    void subcase_start(const ::doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const ::doctest::AssertData&) override {}
    void log_message(const ::doctest::MessageData&) override {}
    void test_case_skipped(const ::doctest::TestCaseData&) override {}
};

} // namespace detail

// The fixture: `sup` is a supervisor whose children know the running test; it is joined when
// the body returns, then the leak check runs.
class fixture : public warden::detail::test_fixture {
  public:
    fixture()
        : test_fixture(warden_doctest_macros::framework) {}
};

} // namespace warden::doctest

REGISTER_LISTENER("warden", 1, warden::doctest::detail::test_name_listener);

#define WARDEN_DETAIL_TEST_CASE(fixture_name, name)                                                \
    namespace {                                                                                    \
    struct fixture_name : ::warden::doctest::fixture {                                             \
        ::boost::asio::awaitable<void> body();                                                     \
    };                                                                                             \
    }                                                                                              \
    TEST_CASE_FIXTURE(fixture_name, name) {                                                        \
        run_body([this] { return body(); });                                                       \
    }                                                                                              \
    ::boost::asio::awaitable<void> fixture_name::body()

// A test whose body is a coroutine run under `sup`:
//   WARDEN_TEST_CASE("name") { co_await sup.spawn(...); co_await sup.join(); }
#define WARDEN_TEST_CASE(name) WARDEN_DETAIL_TEST_CASE(DOCTEST_ANONYMOUS(WARDEN_TEST_), name)
