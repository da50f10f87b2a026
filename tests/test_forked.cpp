#include <warden/process.hpp>

#include <warden/supervisor.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "forked.hpp"
#include "remote_failure.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace forked_test {

struct custom_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

} // namespace forked_test

namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

bool tail_has(const std::vector<std::string>& tail, const std::string& line) {
    return std::find(tail.begin(), tail.end(), line) != tail.end();
}

template <class Exception, class F>
Exception failure_of(F f) {
    warden::supervisor sup;
    sup.spawn_forked(std::move(f));
    try {
        sup.wait();
    } catch (const Exception& e) {
        return e;
    }
    FAIL("the forked child did not fail as expected");
    throw std::logic_error("unreachable");
}

// The sanitizer build must let the deliberate faults below crash, not report them.
// Volatile so that the compiler can neither prove the write is to null (GCC would make it a
// trap, SIGILL) nor prove the recursion endless (-Winfinite-recursion).
int* volatile null_target = nullptr;
volatile bool keep_recursing = true;

[[gnu::noinline, gnu::no_sanitize("undefined")]] void crash_in_forked_worker() {
    *null_target = 42;
}

[[gnu::noinline, gnu::no_sanitize("undefined")]] void abort_in_forked_worker() {
    std::abort();
}

[[gnu::noinline, gnu::no_sanitize("undefined")]] int
recurse_in_forked_worker(volatile char* caller_frame) {
    volatile char frame[256];
    frame[0] = caller_frame[0];
    return keep_recursing ? recurse_in_forked_worker(frame) : frame[0];
}

// Writes `bytes` where the failure message goes, then exits as if an exception escaped.
[[noreturn]] void send_raw(const std::string& bytes) {
    const int fd = warden::detail::forked_failure_fd();
    std::size_t done = 0;
    while (fd >= 0 && done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0)
            break;
        done += static_cast<std::size_t>(n);
    }
    ::_exit(70);
}

std::string valid_message() {
    return warden::detail::encode_remote_failure({"std::runtime_error", "boom", "0# f"});
}

void check_unreadable(const std::string& bytes, const std::string& reason) {
    auto e = failure_of<warden::remote_error>([bytes] { send_raw(bytes); });
    CHECK(e.type_name() == "<unreadable failure message>");
    CHECK(contains(e.what(), "not a failure message warden can read"));
    CHECK(contains(e.what(), "exited with code 70"));
    CHECK(contains(e.remote_what(), reason));
}

} // namespace

TEST_CASE("a forked child that returns succeeds") {
    warden::supervisor sup;
    auto& p = sup.spawn_forked([] {});
    CHECK_NOTHROW(p.as_task().get());
    CHECK(p.done());
    sup.wait();
    REQUIRE(p.wait_status());
    CHECK(WIFEXITED(*p.wait_status()));
    CHECK(WEXITSTATUS(*p.wait_status()) == 0);
    CHECK(sup.failures().empty());
}

TEST_CASE("an exception escaping a forked child arrives as remote_error with type and message") {
    auto e = failure_of<warden::remote_error>([] { throw std::invalid_argument("bad input 42"); });
    CHECK(e.type_name() == "std::invalid_argument");
    CHECK(e.remote_what() == "bad input 42");
    CHECK_FALSE(e.stacktrace().empty());
    CHECK(contains(e.what(), "std::invalid_argument: bad input 42"));
}

TEST_CASE("a user-defined exception type keeps its name across the fork") {
    auto e = failure_of<warden::remote_error>(
        [] { throw forked_test::custom_failure("custom failure in the child"); });
    CHECK(e.type_name() == "forked_test::custom_failure");
    CHECK(e.remote_what() == "custom failure in the child");
}

TEST_CASE("a non-std exception escaping a forked child is named by its type") {
    auto e = failure_of<warden::remote_error>([] { throw 42; });
    CHECK(e.type_name() == "int");
}

TEST_CASE("the remote failure is reported with the forked child's origin") {
    warden::supervisor sup;
    sup.spawn_forked([] { throw std::runtime_error("worker failed"); }, {.name = "worker"});
    CHECK_THROWS_AS(sup.wait(), warden::remote_error);
    REQUIRE(sup.first_failure());
    CHECK(sup.first_failure()->child == "worker");
    CHECK(sup.first_failure()->kind == warden::child_kind::forked);
    CHECK(contains(sup.first_failure()->origin.where.file_name(), "test_forked.cpp"));
}

TEST_CASE("bad failure messages become a clear remote_error: garbage") {
    check_unreadable("this is not a message", "magic");
}

TEST_CASE("bad failure messages become a clear remote_error: truncated") {
    const auto message = valid_message();
    check_unreadable(message.substr(0, message.size() / 2), "");
}

TEST_CASE("bad failure messages become a clear remote_error: wrong version") {
    auto message = valid_message();
    message[4] = 99;
    check_unreadable(message, "version");
}

TEST_CASE("bad failure messages become a clear remote_error: trailing bytes") {
    check_unreadable(valid_message() + "xyz", "");
}

TEST_CASE("bad failure messages become a clear remote_error: oversized, without a hang") {
    const auto start = clock_type::now();
    auto e = failure_of<warden::remote_error>(
        [] { send_raw(std::string(2 * warden::detail::max_remote_failure_size, 'x')); });
    CHECK(contains(e.remote_what(), "larger than"));
    CHECK(clock_type::now() - start < 20s);
}

TEST_CASE("a forked child that exits non-zero without a message fails with process_error") {
    auto e = failure_of<warden::process_error>([] { ::_exit(3); });
    CHECK(e.exit_code() == 3);
}

TEST_CASE("a forked child's segfault reports SIGSEGV with a stack naming the crashing function") {
    auto e = failure_of<warden::process_crashed>([] { crash_in_forked_worker(); });
    CHECK(e.signal() == SIGSEGV);
    CHECK(contains(e.crash_stack(), "crash_in_forked_worker"));
    CHECK(contains(e.what(), "crash_in_forked_worker"));
}

TEST_CASE("what a forked child printed before crashing is in the report") {
    auto e = failure_of<warden::process_crashed>([] {
        std::printf("before the crash\n"); // stdout is a pipe, yet line-buffered in the child
        crash_in_forked_worker();
    });
    CHECK(tail_has(e.output_tail(), "before the crash"));
}

TEST_CASE("a forked child's abort reports SIGABRT with its stack") {
    auto e = failure_of<warden::process_crashed>([] { abort_in_forked_worker(); });
    CHECK(e.signal() == SIGABRT);
    CHECK(contains(e.crash_stack(), "abort_in_forked_worker"));
}

TEST_CASE("a forked child's stack overflow reports SIGSEGV instead of hanging") {
    const auto start = clock_type::now();
    auto e = failure_of<warden::process_crashed>([] {
        volatile char start_frame[1] = {0};
        recurse_in_forked_worker(start_frame);
    });
    CHECK(e.signal() == SIGSEGV);
    CHECK(contains(e.crash_stack(), "recurse_in_forked_worker"));
    CHECK(clock_type::now() - start < 30s);
}

TEST_CASE("a forked child's stdout and stderr are captured") {
    warden::supervisor sup;
    auto& p = sup.spawn_forked([] {
        std::printf("from printf\n");
        std::cout << "from cout" << std::endl;
        std::fprintf(stderr, "from stderr\n");
    });
    sup.wait();
    const auto tail = p.output_tail();
    CHECK(tail_has(tail, "from printf"));
    CHECK(tail_has(tail, "from cout"));
    CHECK(tail_has(tail, "from stderr"));
}

TEST_CASE("a forked child can be waited for by a line and terminated") {
    warden::supervisor sup;
    auto& p = sup.spawn_forked([] {
        std::printf("worker ready\n");
        std::fflush(stdout);
        for (;;)
            ::pause();
    });
    CHECK(p.wait_for_line_blocking("ready", 10s) == "worker ready");
    p.terminate();
    sup.wait();
    CHECK(sup.failures().empty());
    REQUIRE(p.wait_status());
    CHECK(WTERMSIG(*p.wait_status()) == SIGTERM);
}

TEST_CASE("the forked failure fd is -1 outside a forked child") {
    CHECK(warden::detail::forked_failure_fd() == -1);
}
