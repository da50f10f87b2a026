#pragma once

// What the doctest, GoogleTest and Catch2 fixtures have in common, written once (compiled in
// src/test_fixture.cpp): the join when the body returns, the coroutine body, the
// unobserved-failure watchdog, the leak check and the JSON report file. An adapter supplies
// only a test_framework (how to fail or warn in the running test) and its framework's macros.
//
// Order of a fixture test's life, kept by the class layout (bases and members are built in
// declaration order and destroyed in reverse):
//   test_scope()    snapshot of this process's threads and child processes
//   sup             the test's supervisor
//   watchdog_       started last
//   ...body...
//   ~test_fixture   watchdog stopped, then `sup` joined (a failure fails the test)
//   ~sup            its I/O and pool threads joined, its processes reaped
//   ~test_scope     leak check against the snapshot, then the report file

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include <warden/fixtures.hpp>
#include <warden/report.hpp>
#include <warden/supervisor.hpp>

namespace warden::detail {

// How the shared fixture speaks to the running test. Plain function pointers to functions
// of the adapter's header: the object lives in static storage and outlives every fixture.
struct test_framework {
    // A failure of the running test, shown at file:line.
    void (*fail_at)(const char* file, unsigned line, const std::string& text);
    // A failure of the running test with no better place than the fixture.
    void (*fail)(const std::string& text);
    // Shown with the running test's output; the verdict does not change.
    void (*warn)(const std::string& text);
    // True when the test body ended by throwing (the framework reports that exception; the
    // fixture adds where the child whose failure it was had been spawned).
    // `uncaught_at_start` is std::uncaught_exceptions() when the fixture was built.
    bool (*body_threw)(int uncaught_at_start);
};

// body_threw for frameworks that destroy the fixture inside the test, while an exception
// that left the body is still in flight (doctest, Catch2).
inline bool unwinding_since(int uncaught_at_start) {
    return std::uncaught_exceptions() > uncaught_at_start;
}

class test_scope {
  public:
    test_scope(const test_scope&) = delete;
    test_scope& operator=(const test_scope&) = delete;

    // What this test's leak check does (a test may change them in its body).
    leak_policy process_leaks = fixtures::process_leaks;
    leak_policy thread_leaks = fixtures::thread_leaks;

  protected:
    explicit test_scope(const test_framework& framework);
    ~test_scope();

    // A failure of the running test at the spawn's file and line, kept for the report file.
    void report_failure(const failure_report& report);
    // The join's deadline passed: a failure at the first running child's spawn.
    void report_timeout(const join_timeout& timeout);
    // Writes the report file now (the watchdog, before it ends the process).
    void write_report_file_for(const failure_report& report);

    const test_framework& framework_;

  private:
    struct snapshot;
    void check_leaks();
    void write_report_file() const;

    std::string test_;
    std::unique_ptr<snapshot> before_;
    std::vector<failure_report> failures_;
    std::string join_timeout_;
    std::vector<std::string> leaks_; // JSON objects
    bool failed_ = false;
};

class test_fixture : public test_scope {
  public:
    warden::supervisor sup;

  protected:
    explicit test_fixture(const test_framework& framework);
    ~test_fixture();

    // Joins `sup` once; a failure or a timeout fails the test. Adapters with a tear-down
    // hook call it there, while the derived fixture's members still exist; the destructor
    // calls it otherwise.
    void finish() noexcept;

    // Runs a coroutine body on `sup`'s executor and waits for it. A child failure cancels the
    // body at its pending co_await and fails the test at the spawn's line; an exception of
    // the body's own (an assertion of the framework's) is rethrown to the framework.
    void run_body(std::function<boost::asio::awaitable<void>()> make_body);

  private:
    void watch(std::stop_token stop);

    int uncaught_at_start_;
    bool finished_ = false;
    std::jthread watchdog_; // last: started once `sup` exists
};

} // namespace warden::detail
