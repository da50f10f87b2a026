#pragma once

// GoogleTest integration (1.12 and later): one include gives
//   - the running test's name ("Suite.Name") in every origin, from a listener the header
//     appends to GoogleTest's listener list (no user code);
//   - warden::gtest::fixture for TEST_F, with member `sup`, joined in TearDown();
//   - WARDEN_TEST(Fixture, Name), whose body is a coroutine cancelled when a child fails;
//   - the unobserved-failure watchdog, the leak check and the report files of
//     <warden/fixtures.hpp>.
// A failure is reported with ADD_FAILURE_AT(the spawn's file, the spawn's line) and the whole
// report. What the three framework adapters share is include/warden/detail/test_fixture.hpp.

#include <cstdio>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include <warden/detail/test_fixture.hpp>
#include <warden/fixtures.hpp>
#include <warden/warden.hpp>

namespace warden::gtest {

using fixtures::join_deadline;
using fixtures::unobserved_exit_code;
using fixtures::unobserved_grace;

namespace detail {

inline void fail_at(const char* file, unsigned line, const std::string& text) {
    ADD_FAILURE_AT(file, static_cast<int>(line)) << text;
}
inline void fail(const std::string& text) {
    ADD_FAILURE() << text;
}
// GoogleTest has no warnings: the text goes to the test's output, as its own messages do.
inline void warn(const std::string& text) {
    std::fprintf(stdout, "%s\n", text.c_str());
    std::fflush(stdout);
}
// GoogleTest catches what the body throws before the fixture is torn down, and records it as
// a fatal failure with no location, "... thrown in the test body.".
inline bool body_threw(int) {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    if (test == nullptr)
        return false;
    const auto& result = *test->result();
    for (int i = 0; i < result.total_part_count(); ++i) {
        const auto& part = result.GetTestPartResult(i);
        if (part.fatally_failed() && part.file_name() == nullptr &&
            std::string_view(part.message()).find("thrown in the test body") !=
                std::string_view::npos)
            return true;
    }
    return false;
}
inline constexpr warden::detail::test_framework framework{&fail_at, &fail, &warn, &body_threw};

class test_name_listener : public ::testing::EmptyTestEventListener {
  public:
    void OnTestStart(const ::testing::TestInfo& test) override {
        warden::set_current_test(std::string(test.test_suite_name()) + "." + test.name());
    }
    void OnTestEnd(const ::testing::TestInfo&) override { warden::set_current_test({}); }
};

// Appended once per process (an inline variable), before main runs the tests; GoogleTest
// owns and deletes it.
inline const bool listener_appended = [] {
    ::testing::UnitTest::GetInstance()->listeners().Append(new test_name_listener);
    return true;
}();

} // namespace detail

// The fixture for TEST_F (which needs a plain name: `struct Service : warden::gtest::fixture {};`
// or `using Service = warden::gtest::fixture;`). `sup` is joined in TearDown(), while a derived
// fixture's members still exist; a derived TearDown() calls this one last.
class fixture : public ::testing::Test, public warden::detail::test_fixture {
  public:
    fixture()
        : test_fixture(detail::framework) {}

  protected:
    void TearDown() override { finish(); }
};

} // namespace warden::gtest

#define WARDEN_DETAIL_GTEST_BODY(suite, name) suite##_##name##_WardenBody

// A test whose body is a coroutine run under `sup`; `suite` is a fixture derived from
// warden::gtest::fixture, as for TEST_F, and the test is listed as suite.name:
//   WARDEN_TEST(Service, Joins) { co_await sup.spawn(...); co_await sup.join(); }
// ASSERT_* return from the function they are in, which a coroutine cannot: use EXPECT_*.
#define WARDEN_TEST(suite, name)                                                                   \
    class WARDEN_DETAIL_GTEST_BODY(suite, name)                                                    \
        : public suite {                                                                           \
      protected:                                                                                   \
        ::boost::asio::awaitable<void> warden_body();                                              \
    };                                                                                             \
    GTEST_TEST_(suite, name, WARDEN_DETAIL_GTEST_BODY(suite, name),                                \
                ::testing::internal::GetTypeId<suite>()) {                                         \
        run_body([this] { return warden_body(); });                                                \
    }                                                                                              \
    ::boost::asio::awaitable<void> WARDEN_DETAIL_GTEST_BODY(suite, name)::warden_body()
