#include "throw_site.hpp"

#include <cstddef>
#include <exception>
#include <latch>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <doctest/doctest.h>

#include <warden/errors.hpp>
#include <warden/supervisor.hpp>

namespace asio = boost::asio;
using warden::detail::recorded_throw_sites;
using warden::detail::throw_sites_enabled;

namespace {

// Read at run time, so the compiler cannot see that the helpers always throw and fold them.
volatile bool throw_now = true;

// The asm statements after each call keep the calls from becoming tail calls, which would
// take these functions' frames off the stack.
[[gnu::noinline]] void throw_site_helper_3() {
    if (throw_now)
        throw std::runtime_error("three calls deep");
}

[[gnu::noinline]] void throw_site_helper_2() {
    throw_site_helper_3();
    asm volatile("" ::: "memory");
}

[[gnu::noinline]] void throw_site_helper_1() {
    throw_site_helper_2();
    asm volatile("" ::: "memory");
}

[[gnu::noinline]] void rethrow_in_catch() {
    try {
        throw_site_helper_1();
    } catch (...) {
        if (throw_now)
            throw;
    }
}

[[gnu::noinline]] void read_past_the_end() {
    const std::vector<int> empty;
    (void)empty.at(static_cast<std::size_t>(throw_now));
    asm volatile("" ::: "memory");
}

template <int N>
[[gnu::noinline]] void numbered_thrower() {
    if (throw_now)
        throw std::runtime_error(fmt::format("thrower {}", N));
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}

std::string first_frame(const std::string& stack) {
    return stack.substr(0, stack.find('\n'));
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// The first line of the stack naming `function`, or -1.
std::ptrdiff_t line_naming(const std::string& stack, const std::string& function) {
    const auto lines = lines_of(stack);
    for (std::size_t i = 0; i < lines.size(); ++i)
        if (contains(lines[i], function))
            return static_cast<std::ptrdiff_t>(i);
    return -1;
}

warden::failure_report report_of_only_failure(warden::supervisor& sup) {
    CHECK_THROWS(sup.wait());
    auto report = sup.first_failure();
    REQUIRE(report.has_value());
    return *report;
}

asio::awaitable<void> throw_site_inner_coroutine() {
    // Resumed from a handler, as a coroutine child's code mostly runs, not from its start.
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    if (throw_now)
        throw std::runtime_error("inner coroutine");
}

asio::awaitable<void> throw_site_middle_coroutine() {
    co_await throw_site_inner_coroutine();
}

asio::awaitable<void> throw_site_outer_coroutine() {
    co_await throw_site_middle_coroutine();
}

const bool no_hook = !throw_sites_enabled();

} // namespace

TEST_CASE("a thread child's throw stack starts at the function with the throw expression" *
          doctest::skip(no_hook)) {
    warden::supervisor sup;
    sup.spawn([] { throw_site_helper_1(); });
    const auto report = report_of_only_failure(sup);
    CHECK(contains(first_frame(report.throw_stack), "throw_site_helper_3"));
    // Its callers follow, innermost first.
    const auto second = line_naming(report.throw_stack, "throw_site_helper_2");
    const auto third = line_naming(report.throw_stack, "throw_site_helper_1");
    CHECK(second == 1);
    CHECK(third == 2);

    const auto text = report.to_string();
    REQUIRE(contains(text, "  thrown at:\n    "));
    REQUIRE(contains(text, "  spawn stack:\n"));
    CHECK(text.find("thrown at:") < text.find("spawn stack:"));
    CHECK(text.find("throw_site_helper_3") > text.find("thrown at:"));
    CHECK(contains(report.to_json(),
                   R"("throw_stack":" 0# (anonymous namespace)::throw_site_helper_3())"));
}

TEST_CASE("a coroutine child's throw stack starts in the nested coroutine that threw" *
          doctest::skip(no_hook)) {
    warden::supervisor sup;
    sup.spawn(throw_site_outer_coroutine());
    const auto report = report_of_only_failure(sup);
    CHECK(report.what == "inner coroutine");
    CHECK(contains(first_frame(report.throw_stack), "throw_site_inner_coroutine"));
    CHECK(report.to_string().find("thrown at:") < report.to_string().find("spawn stack:"));
}

TEST_CASE("throw; in a child's catch block keeps the site of the first throw" *
          doctest::skip(no_hook)) {
    warden::supervisor sup;
    sup.spawn([] { rethrow_in_catch(); });
    const auto report = report_of_only_failure(sup);
    CHECK(contains(first_frame(report.throw_stack), "throw_site_helper_3"));
    CHECK(line_naming(report.throw_stack, "rethrow_in_catch") == 3);
}

TEST_CASE("std::rethrow_exception in a child keeps the site of the first throw" *
          doctest::skip(no_hook)) {
    warden::supervisor sup;
    sup.spawn([] {
        std::exception_ptr caught;
        try {
            throw_site_helper_1();
        } catch (...) {
            caught = std::current_exception();
        }
        std::rethrow_exception(caught);
    });
    const auto report = report_of_only_failure(sup);
    CHECK(contains(first_frame(report.throw_stack), "throw_site_helper_3"));
}

TEST_CASE("a failure passed up from a nested supervisor keeps its throw site" *
          doctest::skip(no_hook)) {
    warden::supervisor outer{{.name = "outer"}};
    outer.spawn([] {
        warden::supervisor inner{{.name = "inner"}};
        inner.spawn([] { throw_site_helper_1(); });
        inner.wait(); // rethrows the inner child's object in the outer child
    });
    const auto report = report_of_only_failure(outer);
    REQUIRE(report.inner != nullptr);
    CHECK(contains(first_frame(report.throw_stack), "throw_site_helper_3"));
    CHECK(report.innermost().throw_stack == report.throw_stack);
}

TEST_CASE("a throw inside the C++ runtime (vector::at) has its site too" * doctest::skip(no_hook)) {
    warden::supervisor sup;
    sup.spawn([] { read_past_the_end(); });
    const auto report = report_of_only_failure(sup);
    CHECK(report.type == "std::out_of_range");
    // libstdc++'s own function throws (its name is not in the stripped library's symbols);
    // the function that called at() is further out.
    CHECK(contains(first_frame(report.throw_stack), "libstdc++"));
    CHECK(line_naming(report.throw_stack, "read_past_the_end") > 0);
}

namespace {

// Counted inside the child: a failure registered meanwhile may drop an old report from the
// registry, and with it an old exception and its record.
std::pair<std::size_t, std::size_t> records_before_and_while_caught() {
    const std::size_t before = recorded_throw_sites();
    try {
        throw_site_helper_1();
    } catch (...) {
        return {before, recorded_throw_sites()};
    }
    return {};
}

} // namespace

TEST_CASE("capture::location records no throw site, capture::stacktrace does" *
          doctest::skip(no_hook)) {
    // One pool thread each: the count is the process's, and another pool thread's warm-up throw
    // (blocking_job) holds a record for a moment, which a child reading the count meanwhile
    // would see (it did, under ASan).
    std::pair<std::size_t, std::size_t> location;
    {
        warden::supervisor sup{{.threads = 1, .capture = warden::capture::location}};
        sup.spawn([&] {
            location = records_before_and_while_caught();
            throw_site_helper_1();
        });
        const auto report = report_of_only_failure(sup);
        CHECK(report.throw_stack.empty());
        CHECK_FALSE(contains(report.to_string(), "thrown at:"));
    }
    CHECK(location.second == location.first);

    std::pair<std::size_t, std::size_t> stacktrace;
    {
        warden::supervisor sup{{.threads = 1}}; // capture::stacktrace, the default
        sup.spawn([&] { stacktrace = records_before_and_while_caught(); });
        sup.wait();
    }
    CHECK(stacktrace.second == stacktrace.first + 1);
}

TEST_CASE("a throw outside any child records nothing, and a child's record goes with its "
          "exception" *
          doctest::skip(no_hook)) {
    const std::size_t before = recorded_throw_sites();
    try {
        throw_site_helper_1();
    } catch (const std::runtime_error&) {
        CHECK(recorded_throw_sites() == before);
    }

    std::exception_ptr kept;
    {
        warden::supervisor sup;
        sup.spawn([&] {
            try {
                throw_site_helper_1();
            } catch (...) {
                kept = std::current_exception();
            }
        });
        sup.wait();
    }
    // Kept alive by `kept`, then gone with it.
    CHECK(recorded_throw_sites() == before + 1);
    CHECK(warden::detail::throw_site_frames(kept).size() > 2);
    kept = nullptr;
    CHECK(recorded_throw_sites() == before);
}

// Each pool thread first runs a job that throws through a child's frames (blocking_job,
// executor_host.cpp), so that the unwinder knows them before a child's throw is captured.
TEST_CASE("a pool thread's warm-up throw leaves no record and no failure" *
          doctest::skip(no_hook)) {
    const std::size_t before = recorded_throw_sites();
    warden::supervisor sup{{.threads = 4}};
    std::latch all_started(4);
    for (int i = 0; i < 4; ++i)
        sup.spawn([&] { all_started.arrive_and_wait(); }); // one on each thread
    CHECK_NOTHROW(sup.wait());
    CHECK(sup.failures().empty());
    CHECK(recorded_throw_sites() == before);
    // A child's own throw on a warmed-up thread still has its site, this file's function first.
    sup.spawn([] { throw_site_helper_1(); });
    const auto report = report_of_only_failure(sup);
    CHECK(contains(report.throw_stack, "throw_site_helper_3"));
}

TEST_CASE("an exception that was never thrown gets no throw site from an earlier one at its "
          "address" *
          doctest::skip(no_hook)) {
    warden::supervisor sup;
    sup.spawn([] {
        // Freed when the catch block ends; glibc gives its memory to the next object of the
        // same size, the one made below (under ASan, another address: the test still holds).
        try {
            throw_site_helper_1();
        } catch (const std::runtime_error&) {
        }
        std::rethrow_exception(std::make_exception_ptr(std::runtime_error("made, not thrown")));
    });
    const auto report = report_of_only_failure(sup);
    CHECK(report.what == "made, not thrown");
    CHECK(report.throw_stack.empty());
}

TEST_CASE("children throwing at once each get their own throw site" * doctest::skip(no_hook)) {
    constexpr int count = 8;
    warden::supervisor sup{{.threads = count, .policy = warden::policy::collect}};
    std::latch all_started(count);
    auto spawn_thrower = [&]<int N>(std::integral_constant<int, N>) {
        sup.spawn(
            [&all_started] {
                all_started.arrive_and_wait();
                numbered_thrower<N>();
            },
            {.name = fmt::format("thrower{}", N)});
    };
    [&]<int... N>(std::integer_sequence<int, N...>) {
        (spawn_thrower(std::integral_constant<int, N>{}), ...);
    }
    (std::make_integer_sequence<int, count>{});
    CHECK_THROWS_AS(sup.wait(), warden::failure_group);
    const auto reports = sup.failures();
    REQUIRE(reports.size() == count);
    for (const auto& report : reports) {
        CAPTURE(report.child);
        const std::string number = report.child.substr(std::string("thrower").size());
        CHECK(report.what == "thrower " + number);
        CHECK(contains(first_frame(report.throw_stack), "numbered_thrower<" + number + ">"));
    }
}

TEST_CASE("a forked child's exception comes with the site of its throw" * doctest::skip(no_hook)) {
    warden::supervisor sup;
    sup.spawn_forked([] { throw_site_helper_1(); });
    const auto report = report_of_only_failure(sup);
    CHECK(report.kind == warden::child_kind::forked);
    CHECK(contains(first_frame(report.throw_stack), "throw_site_helper_3"));
    CHECK(line_naming(report.throw_stack, "throw_site_helper_1") == 2);
    CHECK(report.to_string().find("thrown at:") < report.to_string().find("spawn stack:"));
    try {
        std::rethrow_exception(report.error);
    } catch (const warden::remote_error& e) {
        CHECK(e.stacktrace() == report.throw_stack);
    }

    warden::supervisor quiet{{.capture = warden::capture::location}};
    quiet.spawn_forked([] { throw_site_helper_1(); });
    CHECK(report_of_only_failure(quiet).throw_stack.empty());
}

TEST_CASE("without the throw hook a child's exception has no throw site" *
          doctest::skip(!no_hook)) {
    warden::supervisor sup;
    sup.spawn([] { throw_site_helper_1(); });
    const auto report = report_of_only_failure(sup);
    CHECK(report.what == "three calls deep");
    CHECK(report.throw_stack.empty());
    CHECK(recorded_throw_sites() == 0);
}
