#pragma once

// doctest integration: one include gives
//   - the running test's name in every origin (a listener, no user code);
//   - warden::doctest::fixture with member `sup`, joined when the body returns;
//   - WARDEN_TEST_CASE, whose body is a coroutine cancelled when a child fails;
//   - the unobserved-failure watchdog: a child failure the body never observes (it is
//     blocked where warden cannot interrupt it) prints its report and ends the test binary
//     after unobserved_grace, instead of hanging until some later timeout.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include <doctest/doctest.h>

#include <warden/warden.hpp>

// doctest's macros name `doctest::`, which inside namespace warden would mean
// warden::doctest; so they are used from here.
namespace warden_doctest_macros {
inline void message_at(const char* file, unsigned line, const std::string& text) {
    ADD_MESSAGE_AT(file, static_cast<int>(line), text);
}
inline void fail_at(const char* file, unsigned line, const std::string& text) {
    ADD_FAIL_CHECK_AT(file, static_cast<int>(line), text);
}
inline void fail(const std::string& text) {
    FAIL_CHECK(text);
}
} // namespace warden_doctest_macros

namespace warden::doctest {

// How long a failure may go unobserved before the test binary is ended. Set before the test.
inline std::chrono::milliseconds unobserved_grace{1000};
// The deadline of the join the fixture does when the body returns.
inline std::chrono::milliseconds join_deadline{std::chrono::seconds(60)};
// Exit status of a binary ended by the watchdog.
inline constexpr int unobserved_exit_code = 70;

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

// The fixture: `sup` is a supervisor whose children know the running test.
class fixture {
  public:
    fixture()
        : sup(supervisor_options{.name = "test supervisor"})
        , watchdog_([this](std::stop_token stop) { watch(stop); }) {}

    fixture(const fixture&) = delete;
    fixture& operator=(const fixture&) = delete;

    // Joins `sup` when the body returns; a failure or a timeout fails the test, reported at
    // the spawn's file and line. Never throws (doctest runs it inside the test).
    ~fixture() {
        watchdog_.request_stop();
        watchdog_.join();
        if (std::uncaught_exceptions() > uncaught_at_start_) {
            // The body is leaving by an exception. If it is the children's failure, say
            // where that child was spawned; doctest itself reports the exception.
            if (auto first = sup.first_failure(); first && sup.failure_observed())
                warden_doctest_macros::message_at(first->origin.where.file_name(),
                                                  first->origin.where.line(), first->to_string());
            sup.cancel();
            return;
        }
        try {
            sup.wait_for(join_deadline);
        } catch (const join_timeout& e) {
            if (!e.running().empty())
                warden_doctest_macros::fail_at(e.running().front().origin.where.file_name(),
                                               e.running().front().origin.where.line(), e.what());
            else
                warden_doctest_macros::fail(e.what());
        } catch (const failure_group& e) {
            for (const auto& r : e.reports())
                warden_doctest_macros::fail_at(r.origin.where.file_name(), r.origin.where.line(),
                                               r.to_string());
        } catch (...) {
            if (const auto* r = report_for(std::current_exception()))
                warden_doctest_macros::fail_at(r->origin.where.file_name(), r->origin.where.line(),
                                               r->to_string());
            else
                warden_doctest_macros::fail(
                    "warden: the supervisor's join threw an unknown exception");
        }
    }

    warden::supervisor sup;

  private:
    void watch(std::stop_token stop) {
        std::mutex mutex;
        std::condition_variable_any changed;
        bool stopped = false;
        std::stop_callback on_stop(sup.stop_token(), [&] {
            {
                std::lock_guard lock(mutex);
                stopped = true;
            }
            changed.notify_all();
        });
        std::unique_lock lock(mutex);
        if (!changed.wait(lock, stop, [&] { return stopped; }))
            return; // the body finished first
        // The supervisor failed or was cancelled: the body has unobserved_grace to notice.
        changed.wait_for(lock, stop, unobserved_grace, [] { return false; });
        if (stop.stop_requested() || sup.failure_observed())
            return;
        auto first = sup.first_failure();
        if (!first)
            return;
        std::fprintf(stderr,
                     "\nwarden: a child failed in test \"%s\" and the test body did not observe "
                     "it within %lld ms (it is blocked where warden cannot interrupt it); "
                     "ending the test binary.\n%s\n",
                     first->origin.test.c_str(), static_cast<long long>(unobserved_grace.count()),
                     first->to_string().c_str());
        std::fflush(stderr);
        sup.cancel(); // SIGTERM to subprocesses before this process goes
        std::_Exit(unobserved_exit_code);
    }

    int uncaught_at_start_ = std::uncaught_exceptions();
    std::jthread watchdog_; // last: started after `sup` exists, stopped first
};

// The fixture behind WARDEN_TEST_CASE: runs the coroutine body on `sup`'s executor and
// cancels it at its pending co_await when the supervisor fails.
class coroutine_fixture : public fixture {
  protected:
    void run_body(std::function<boost::asio::awaitable<void>()> make_body) {
        namespace asio = boost::asio;
        auto executor = sup.get_executor();
        auto signal = std::make_shared<asio::cancellation_signal>();
        // A promise, not a latch on this stack: the handler may still be inside count_down()
        // when the waiter returns.
        std::promise<std::exception_ptr> finished;
        auto body_result = finished.get_future();
        asio::co_spawn(
            executor, make_body(),
            asio::bind_cancellation_slot(
                signal->slot(), [finished = std::move(finished)](std::exception_ptr e) mutable {
                    finished.set_value(std::move(e));
                }));
        std::exception_ptr body_error;
        {
            std::stop_callback on_failure(sup.stop_token(), [&] {
                asio::post(executor, [signal] { signal->emit(asio::cancellation_type::terminal); });
            });
            body_error = body_result.get();
        }
        if (!body_error)
            return;
        // Cancelled because a child failed: the child's failure is the test's.
        if (warden::detail::is_cancellation(body_error) && sup.first_failure())
            sup.wait_for(join_deadline);
        std::rethrow_exception(body_error);
    }
};

} // namespace warden::doctest

REGISTER_LISTENER("warden", 1, warden::doctest::detail::test_name_listener);

#define WARDEN_DETAIL_TEST_CASE(fixture_name, name)                                                \
    namespace {                                                                                    \
    struct fixture_name : ::warden::doctest::coroutine_fixture {                                   \
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
