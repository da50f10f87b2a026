// A process or forked child whose output holds a sanitizer report fails with the report's
// summary (docs/processes.md, "Sanitizer reports").

#include <warden/process.hpp>

#include <warden/errors.hpp>
#include <warden/supervisor.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/utsname.h>

#include <doctest/doctest.h>

#include "failure_of.hpp"

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

using warden_test::failure_of;

template <class Exception>
Exception process_failure(std::vector<std::string> argv,
                          std::optional<std::map<std::string, std::string>> env = std::nullopt) {
    return failure_of<Exception>([&](warden::supervisor& sup) {
        sup.spawn_process({.argv = std::move(argv), .env = std::move(env)});
    });
}

// A report as ASan prints it, cut into pieces that the shell writes one by one.
const std::string report_in_pieces =
    "printf '==4242==ERROR: Address'; printf 'Sanitizer: heap-use-after-free on addr'; "
    "printf 'ess 0x602000000014 at pc 0x1 bp 0x2 sp 0x3\\n'; "
    "printf 'READ of size 4 at 0x602000000014 thread T0\\n    #0 0x55d in parse_'; "
    "printf 'header(char const*) /src/'; printf 'parser.cpp:42:7\\n'; "
    "printf '    #1 0x55e in main /src/main.cpp:3\\n'";

[[maybe_unused]] std::string program(const char* name) {
    return std::string(WARDEN_TEST_PROGRAMS_DIR) + "/" + name;
}

// The environment for a sanitizer program: its own *SAN_OPTIONS, none of the caller's.
[[maybe_unused]] std::map<std::string, std::string> sanitizer_env(std::string name,
                                                                  std::string options) {
    std::map<std::string, std::string> env{{std::move(name), std::move(options)}};
    if (const char* path = std::getenv("PATH"))
        env["PATH"] = path;
    return env;
}

// TSan's fixed shadow layout fails with more than 28 bits of mmap randomisation: then the
// program runs without ASLR, as .ci/run runs the TSan stage.
[[maybe_unused]] std::vector<std::string> without_aslr_if_tsan_needs_it(std::string path) {
    std::ifstream in("/proc/sys/vm/mmap_rnd_bits");
    int bits = 28;
    in >> bits;
    if (bits <= 28)
        return {std::move(path)};
    utsname machine{};
    ::uname(&machine);
    return {"setarch", machine.machine, "-R", std::move(path)};
}

} // namespace

#ifdef WARDEN_TEST_HAVE_ASAN_PROGRAM
TEST_CASE("a process's AddressSanitizer report fails it with the report's summary") {
    const auto e = process_failure<warden::process_error>(
        {program("warden_asan_program")},
        sanitizer_env("ASAN_OPTIONS", "detect_leaks=0:color=always"));
    INFO(e.what());
    CHECK(e.exit_code() == 1);
    CHECK(
        e.sanitizer().starts_with("AddressSanitizer: heap-use-after-free in read_freed_int() at "));
    CHECK(contains(e.sanitizer(), "sanitizer_asan.cpp:"));
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; process `"));
    CHECK(contains(e.what(), "exited with code 1"));
}
#endif

#ifdef WARDEN_TEST_HAVE_LSAN_PROGRAM
TEST_CASE("a process's LeakSanitizer report fails it with the leaking function") {
    const auto e = process_failure<warden::process_error>(
        {program("warden_lsan_program")}, sanitizer_env("ASAN_OPTIONS", "detect_leaks=1"));
    INFO(e.what());
    CHECK(e.sanitizer().starts_with("LeakSanitizer: detected memory leaks in leak_a_buffer() at "));
    CHECK(contains(e.sanitizer(), "sanitizer_lsan.cpp:"));
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; process `"));
}
#endif

#ifdef WARDEN_TEST_HAVE_TSAN_PROGRAM
TEST_CASE("a process's ThreadSanitizer report fails it with the racing function") {
    const auto e = process_failure<warden::process_error>(
        without_aslr_if_tsan_needs_it(program("warden_tsan_program")),
        sanitizer_env("TSAN_OPTIONS", "color=never"));
    INFO(e.what());
    CHECK(e.exit_code() == 66);
    CHECK(e.sanitizer().starts_with("ThreadSanitizer: data race in race_on_counter() at "));
    CHECK(contains(e.sanitizer(), "sanitizer_tsan.cpp:"));
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; process `"));
}
#endif

#ifdef WARDEN_TEST_HAVE_UBSAN_PROGRAM
TEST_CASE("a process that exits 0 after an UndefinedBehaviorSanitizer report fails") {
    const auto e = process_failure<warden::process_error>(
        {program("warden_ubsan_program")},
        sanitizer_env("UBSAN_OPTIONS", "halt_on_error=0:print_stacktrace=1"));
    INFO(e.what());
    CHECK(e.exit_code() == 0);
    CHECK(e.sanitizer().starts_with("UndefinedBehaviorSanitizer: signed integer overflow: "));
    CHECK(contains(e.sanitizer(), " in add_one(int) at "));
    CHECK(contains(e.sanitizer(), "sanitizer_ubsan.cpp:"));
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; process `"));
    CHECK(contains(e.what(), "exited with code 0"));
}

// Without a stack the report never becomes complete: it is found all the same.
TEST_CASE("an UndefinedBehaviorSanitizer report without a stack fails its process too") {
    const auto e = process_failure<warden::process_error>(
        {program("warden_ubsan_program")}, sanitizer_env("UBSAN_OPTIONS", "halt_on_error=0"));
    INFO(e.what());
    CHECK(e.exit_code() == 0);
    CHECK(e.sanitizer().starts_with("UndefinedBehaviorSanitizer: signed integer overflow: "));
    CHECK(contains(e.sanitizer(), "sanitizer_ubsan.cpp:"));
}
#endif

TEST_CASE("a report written in many small pieces fails a process that exits 0") {
    const auto e =
        process_failure<warden::process_error>({"sh", "-c", report_in_pieces + "; exit 0"});
    INFO(e.what());
    CHECK(e.exit_code() == 0);
    CHECK(e.sanitizer() == "AddressSanitizer: heap-use-after-free in parse_header(char const*) at "
                           "/src/parser.cpp:42:7");
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; process `sh -c "));
}

TEST_CASE("output that only mentions a sanitizer does not fail a process") {
    warden::supervisor sup;
    auto& p = sup.spawn_process(
        {.argv = {"sh", "-c",
                  "echo 'built with AddressSanitizer: yes'; echo 'ThreadSanitizer: off'; "
                  "echo 'log ==12== ERROR: AddressSanitizer: not at the start'; "
                  "echo 'SUMMARY: 12 tests passed'; echo 'a runtime error: none'"}});
    CHECK_NOTHROW(sup.wait());
    CHECK(p.output_tail().size() == 5);
}

TEST_CASE("a process that crashes after a report fails with process_crashed carrying it") {
    const auto e = process_failure<warden::process_crashed>(
        {"sh", "-c", report_in_pieces + "; kill -SEGV $$"});
    CHECK(e.signal() == SIGSEGV);
    CHECK(e.sanitizer().starts_with("AddressSanitizer: heap-use-after-free in parse_header"));
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; process `sh -c "));
}

TEST_CASE("a line waiter of a process that exits 0 after a report gets the report's failure") {
    warden::supervisor sup;
    auto& p = sup.spawn_process({.argv = {"sh", "-c", report_in_pieces}});
    try {
        p.wait_for_line_blocking("never printed", 30s);
        FAIL("wait_for_line returned");
    } catch (const warden::process_error& e) {
        CHECK(e.exit_code() == 0);
        CHECK(e.sanitizer().starts_with("AddressSanitizer: heap-use-after-free in parse_header"));
    }
    CHECK_THROWS_AS(sup.wait(), warden::process_error);
}

TEST_CASE("a forked child that prints a report and returns fails with the report") {
    const auto e = failure_of<warden::process_error>([](warden::supervisor& sup) {
        sup.spawn_forked([] {
            std::fprintf(stderr, "==123==ERROR: AddressSanitizer: heap-use-after-free on address "
                                 "0x602000000014 at pc 0x1 bp 0x2 sp 0x3\n"
                                 "READ of size 4 at 0x602000000014 thread T0\n"
                                 "    #0 0x55d in free_then_read() /src/forked.cpp:9\n");
        });
    });
    INFO(e.what());
    CHECK(e.exit_code() == 0);
    CHECK(e.sanitizer() ==
          "AddressSanitizer: heap-use-after-free in free_then_read() at /src/forked.cpp:9");
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; process `forked#"));
}

TEST_CASE("an exception escaping a forked child after a report stays a remote_error with it") {
    const auto e = failure_of<warden::remote_error>([](warden::supervisor& sup) {
        sup.spawn_forked([] {
            std::fprintf(stderr, "/src/calc.cpp:7:12: runtime error: signed integer overflow: "
                                 "2147483647 + 1 cannot be represented in type 'int'\n");
            throw std::out_of_range("result too large");
        });
    });
    INFO(e.what());
    CHECK(e.remote_what() == "result too large");
    CHECK(e.sanitizer() == "UndefinedBehaviorSanitizer: signed integer overflow: 2147483647 + 1 "
                           "cannot be represented in type 'int' at /src/calc.cpp:7:12");
    CHECK(std::string(e.what()).starts_with(e.sanitizer() + "; std::out_of_range: result"));
}

TEST_CASE("a forked child's crash after a report keeps both the report and the crash stack") {
    const auto e = failure_of<warden::process_crashed>([](warden::supervisor& sup) {
        sup.spawn_forked([] {
            std::fprintf(stderr, "WARNING: ThreadSanitizer: data race (pid=77)\n"
                                 "  Write of size 4 at 0x1 by main thread:\n"
                                 "    #0 bump_counter() /src/c.cpp:5 (prog+0x1234)\n");
            ::raise(SIGSEGV);
        });
    });
    CHECK(e.sanitizer() == "ThreadSanitizer: data race in bump_counter() at /src/c.cpp:5");
    const std::string what = e.what();
    CHECK(what.starts_with(e.sanitizer() + "; process `forked#"));
    CHECK(contains(what, "killed by SIGSEGV"));
    CHECK_FALSE(e.crash_stack().empty());
    CHECK(contains(what, "crash stack:"));
}

// docs/decisions.md: a report is a bug even in a process being cancelled, except a leak report.
TEST_CASE("a cancelled process that printed a sanitizer report fails with it") {
    warden::supervisor sup;
    auto& p = sup.spawn_process(
        {.argv = {"sh", "-c", report_in_pieces + "; echo ready; exec sleep 1000"}});
    p.wait_for_line_blocking("ready", 30s);
    p.terminate();
    try {
        sup.wait();
        FAIL("the cancelled process with a report did not fail");
    } catch (const warden::process_crashed& e) {
        CHECK(e.signal() == SIGTERM);
        CHECK(e.sanitizer().starts_with("AddressSanitizer: heap-use-after-free in parse_header"));
    }
}

TEST_CASE("a cancelled process whose only report is a leak ends as cancelled") {
    warden::supervisor sup;
    auto& p = sup.spawn_process(
        {.argv = {"sh", "-c",
                  "echo '==9==ERROR: LeakSanitizer: detected memory leaks'; "
                  "echo 'Direct leak of 40 byte(s) in 1 object(s) allocated from:'; "
                  "echo '    #0 0x1 in malloc (/lib/libasan.so.8+0x1)'; "
                  "echo '    #1 0x2 in serve_request /src/s.cpp:4'; echo ready; "
                  "exec sleep 1000"}});
    p.wait_for_line_blocking("ready", 30s);
    p.terminate();
    CHECK_NOTHROW(sup.wait());
    CHECK(sup.failures().empty());
}
