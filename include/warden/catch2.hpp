#pragma once

// Catch2 integration: one include gives
//   - the running test's name in every origin (a listener the header registers; no user code);
//   - warden::catch2::fixture for TEST_CASE_METHOD, with member `sup`, joined when the body
//     returns;
//   - WARDEN_CATCH_TEST_CASE("name", "[tags]"), whose body is a coroutine cancelled when a
//     child fails;
//   - the unobserved-failure watchdog, the leak check and the report files of
//     <warden/fixtures.hpp>.
// What the three framework adapters share is include/warden/detail/test_fixture.hpp.
//
// Catch2 2.13 (Debian 12's `catch2`, single header <catch2/catch.hpp>) is what this is built
// and tested with. Catch2 v3 is picked when its <catch2/catch_test_macros.hpp> is found; the
// differences are the includes and the listener's base class, in the #if below, and the
// message's type in message_at(), which passes a temporary std::string that every version
// accepts. Define WARDEN_CATCH2_V2 to force the v2 header when both are installed.
//
// Catch2 v2 declares listeners only under CATCH_CONFIG_EXTERNAL_INTERFACES: include this
// header before <catch2/catch.hpp>, or define that macro first.

#if __has_include(<catch2/catch_test_macros.hpp>) && !defined(WARDEN_CATCH2_V2)
#define WARDEN_DETAIL_CATCH2_V3 1
#include <catch2/catch_test_case_info.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/reporters/catch_reporter_event_listener.hpp>
#include <catch2/reporters/catch_reporter_registrars.hpp>
#else
#if defined(TWOBLUECUBES_SINGLE_INCLUDE_CATCH_HPP_INCLUDED) &&                                     \
    !defined(CATCH_CONFIG_EXTERNAL_INTERFACES)
#error                                                                                             \
    "include <warden/catch2.hpp> before <catch2/catch.hpp> (or define CATCH_CONFIG_EXTERNAL_INTERFACES)"
#endif
#ifndef CATCH_CONFIG_EXTERNAL_INTERFACES
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#endif
#include <catch2/catch.hpp>
#endif

#include <string>

#include <warden/detail/test_fixture.hpp>
#include <warden/fixtures.hpp>
#include <warden/warden.hpp>

namespace warden::catch2 {

using fixtures::join_deadline;
using fixtures::unobserved_exit_code;
using fixtures::unobserved_grace;

namespace detail {

#ifdef WARDEN_DETAIL_CATCH2_V3
using listener_base = ::Catch::EventListenerBase;
#else
using listener_base = ::Catch::TestEventListenerBase;
#endif

// What FAIL_CHECK and WARN expand to, at a location of the caller's choosing.
inline void message_at(const char* file, unsigned line, ::Catch::ResultWas::OfType type,
                       const std::string& text) {
    ::Catch::AssertionHandler handler(::Catch::StringRef("FAIL_CHECK"),
                                      ::Catch::SourceLineInfo(file, line), ::Catch::StringRef(),
                                      ::Catch::ResultDisposition::ContinueOnFailure);
    // A temporary: Catch2 2 takes a StringRef, current v3 releases a std::string&&.
    handler.handleMessage(type, std::string(text));
    handler.complete();
}
inline void fail_at(const char* file, unsigned line, const std::string& text) {
    message_at(file, line, ::Catch::ResultWas::ExplicitFailure, text);
}
inline void fail(const std::string& text) {
    fail_at(__FILE__, __LINE__, text);
}
inline void warn(const std::string& text) {
    message_at(__FILE__, __LINE__, ::Catch::ResultWas::Warning, text);
}
inline constexpr warden::detail::test_framework framework{&fail_at, &fail, &warn,
                                                          &warden::detail::unwinding_since};

struct test_name_listener : listener_base {
    using listener_base::listener_base;
    void testCaseStarting(const ::Catch::TestCaseInfo& test) override {
        listener_base::testCaseStarting(test);
        warden::set_current_test(test.name);
    }
    void testCaseEnded(const ::Catch::TestCaseStats& stats) override {
        warden::set_current_test({});
        listener_base::testCaseEnded(stats);
    }
};

// One per translation unit that includes this header; each sets the same name.
CATCH_REGISTER_LISTENER(test_name_listener)

} // namespace detail

// The fixture for TEST_CASE_METHOD: `sup` is a supervisor whose children know the running
// test; it is joined when the body returns, then the leak check runs.
class fixture : public warden::detail::test_fixture {
  public:
    fixture()
        : test_fixture(detail::framework) {}
};

} // namespace warden::catch2

#define WARDEN_DETAIL_CATCH_TEST_CASE(fixture_name, ...)                                           \
    namespace {                                                                                    \
    struct fixture_name : ::warden::catch2::fixture {                                              \
        ::boost::asio::awaitable<void> body();                                                     \
    };                                                                                             \
    }                                                                                              \
    TEST_CASE_METHOD(fixture_name, __VA_ARGS__) {                                                  \
        run_body([this] { return body(); });                                                       \
    }                                                                                              \
    ::boost::asio::awaitable<void> fixture_name::body()

// A test whose body is a coroutine run under `sup`:
//   WARDEN_CATCH_TEST_CASE("name", "[tags]") { co_await sup.spawn(...); co_await sup.join(); }
#define WARDEN_CATCH_TEST_CASE(...)                                                                \
    WARDEN_DETAIL_CATCH_TEST_CASE(INTERNAL_CATCH_UNIQUE_NAME(WARDEN_CATCH_TEST_), __VA_ARGS__)
