#include "sanitizer_report.hpp"

#include <chrono>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "helpers.hpp"

using warden::detail::find_sanitizer_report;
using warden::detail::sanitizer_scanner;

namespace {

std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    while (!text.empty()) {
        const auto end = text.find('\n');
        lines.emplace_back(text.substr(0, end));
        if (end == std::string_view::npos)
            break;
        text.remove_prefix(end + 1);
    }
    return lines;
}

// Feeds `text` one line at a time, as a process's output reaches warden.
sanitizer_scanner scan(std::string_view text) {
    sanitizer_scanner scanner;
    for (const auto& line : split_lines(text))
        scanner.feed_line(line);
    return scanner;
}

std::string summary_of(std::string_view text) {
    return scan(text).summary();
}

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

// Reports as g++ 12's runtimes print them (tests/programs' sanitizer programs and the like),
// addresses and paths aside.
constexpr std::string_view gcc_asan_use_after_free = R"(starting up
=================================================================
==10865==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000014 at pc 0x55c0368e71f8 bp 0x7ffd18ada020 sp 0x7ffd18ada018
READ of size 4 at 0x602000000014 thread T0
    #0 0x55c0368e71f7 in use_after_free() /src/app/helper.cpp:14
    #1 0x55c0368e720c in main /src/app/helper.cpp:20
    #2 0x7f83fbc45249 in __libc_start_call_main ../sysdeps/nptl/libc_start_call_main.h:58
    #3 0x7f83fbc45304 in __libc_start_main_impl ../csu/libc-start.c:360
    #4 0x55c0368e70e0 in _start (/src/app/helper+0x10e0)

0x602000000014 is located 4 bytes inside of 16-byte region [0x602000000010,0x602000000020)
freed by thread T0 here:
    #0 0x7f83fc2ba038 in operator delete[](void*) ../../../../src/libsanitizer/asan/asan_new_delete.cpp:155
    #1 0x55c0368e71c6 in use_after_free() /src/app/helper.cpp:13
    #2 0x55c0368e720c in main /src/app/helper.cpp:20

previously allocated by thread T0 here:
    #0 0x7f83fc2b9628 in operator new[](unsigned long) ../../../../src/libsanitizer/asan/asan_new_delete.cpp:98
    #1 0x55c0368e71bb in use_after_free() /src/app/helper.cpp:12
    #2 0x55c0368e720c in main /src/app/helper.cpp:20

SUMMARY: AddressSanitizer: heap-use-after-free /src/app/helper.cpp:14 in use_after_free()
Shadow bytes around the buggy address:
=>0x0c047fff8000: fa fa[fd]fd fa fa fa fa fa fa fa fa fa fa fa fa
==10865==ABORTING
)";

constexpr std::string_view gcc_lsan_leak = R"(
=================================================================
==11010==ERROR: LeakSanitizer: detected memory leaks

Direct leak of 40 byte(s) in 1 object(s) allocated from:
    #0 0x7f344c4b89cf in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69
    #1 0x56260529b196 in leak_memory() /src/app/leak.cpp:4
    #2 0x56260529b1a9 in main /src/app/leak.cpp:5

Indirect leak of 8 byte(s) in 1 object(s) allocated from:
    #0 0x7f344c4b89cf in __interceptor_malloc ../../../../src/libsanitizer/asan/asan_malloc_linux.cpp:69
    #1 0x56260529b1b0 in make_node() /src/app/leak.cpp:9

SUMMARY: AddressSanitizer: 48 byte(s) leaked in 2 allocation(s).
)";

constexpr std::string_view gcc_tsan_data_race = R"(==================
WARNING: ThreadSanitizer: data race (pid=11467)
  Read of size 4 at 0x55cdee6a409c by main thread:
    #0 race_on_counter() /src/app/race.cpp:4 (race+0x1247)
    #1 main /src/app/race.cpp:5 (race+0x1315)

  Previous write of size 4 at 0x55cdee6a409c by thread T1:
    #0 race_on_counter() /src/app/race.cpp:4 (race+0x1258)
    #1 void std::__invoke_impl<void, void (*)()>(std::__invoke_other, void (*&&)()) /usr/include/c++/12/bits/invoke.h:61 (race+0x13ef)
    #2 <null> <null> (libstdc++.so.6+0xd44a2)

  Location is global 'counter' of size 4 at 0x55cdee6a409c (race+0x409c)

  Thread T1 (tid=11469, finished) created by main thread at:
    #0 pthread_create ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:1001 (libtsan.so.2+0x5e686)
    #1 main /src/app/race.cpp:5 (race+0x1300)

SUMMARY: ThreadSanitizer: data race /src/app/race.cpp:4 in race_on_counter()
==================
ThreadSanitizer: reported 1 warnings
)";

constexpr std::string_view gcc_ubsan_overflow =
    "overflow.cpp:3:60: runtime error: signed integer overflow: 2147483647 + 1 cannot be "
    "represented in type 'int'\n"
    "-2147483648\n";

constexpr std::string_view ubsan_overflow_summary =
    "UndefinedBehaviorSanitizer: signed integer overflow: 2147483647 + 1 cannot be represented "
    "in type 'int'";

} // namespace

TEST_CASE("an AddressSanitizer report is summarised by its kind and first frame outside the "
          "runtime") {
    const auto scanner = scan(gcc_asan_use_after_free);
    CHECK(scanner.found());
    CHECK(scanner.complete());
    CHECK(scanner.summary() ==
          "AddressSanitizer: heap-use-after-free in use_after_free() at /src/app/helper.cpp:14");
}

TEST_CASE("the kinds of AddressSanitizer headers end before their details") {
    const auto kind_of = [](std::string_view header) {
        const auto summary = summary_of(std::string(header) + "\n    #0 0x1 in f() /a.cpp:1\n");
        return summary.substr(0, summary.find(" in f()"));
    };
    CHECK(kind_of("==1==ERROR: AddressSanitizer: stack-buffer-overflow on address 0x7ffd at pc "
                  "0x55 bp 0x7ff sp 0x7ff") == "AddressSanitizer: stack-buffer-overflow");
    CHECK(kind_of("==1==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000000 (pc "
                  "0x56 bp 0x1 sp 0x7ff T0)") == "AddressSanitizer: SEGV");
    CHECK(kind_of("==1==ERROR: AddressSanitizer: attempting double-free on 0x602000000010 in "
                  "thread T0:") == "AddressSanitizer: attempting double-free");
    CHECK(kind_of("==1==ERROR: AddressSanitizer: alloc-dealloc-mismatch (operator new [] vs "
                  "operator delete) on 0x602000000010") ==
          "AddressSanitizer: alloc-dealloc-mismatch");
    CHECK(kind_of("==1==ERROR: AddressSanitizer: memcpy-param-overlap: memory ranges "
                  "[0x1,0x5) and [0x3, 0x7) overlap") == "AddressSanitizer: memcpy-param-overlap");
    CHECK(kind_of("==1==ERROR: UndefinedBehaviorSanitizer: SEGV on unknown address") ==
          "UndefinedBehaviorSanitizer: SEGV");
}

TEST_CASE("an AddressSanitizer SEGV's explanation lines come before its stack") {
    CHECK(summary_of(R"(AddressSanitizer:DEADLYSIGNAL
=================================================================
==6631==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000000 (pc 0x56513e97519f bp 0x000000000001 sp 0x7ffe272a8938 T0)
==6631==The signal is caused by a READ memory access.
==6631==Hint: address points to the zero page.
    #0 0x56513e97519f in crash() /src/app/segv.cpp:2
    #1 0x56513e9751b3 in main /src/app/segv.cpp:3

AddressSanitizer can not provide additional info.
SUMMARY: AddressSanitizer: SEGV /src/app/segv.cpp:2 in crash()
==6631==ABORTING
)") == "AddressSanitizer: SEGV in crash() at /src/app/segv.cpp:2");
}

TEST_CASE("clang's frames with columns, build ids and unsymbolised runtime frames are read") {
    CHECK(
        summary_of(
            R"(==16247==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000014 at pc 0x5599c791d553 bp 0x7ffe899391b0 sp 0x7ffe899391a8
READ of size 4 at 0x602000000014 thread T0
    #0 0x5599c791d552 in use_after_free() /src/app/helper.cpp:14:12
    #1 0x5599c791d571 in main /src/app/helper.cpp:20:41
    #4 0x5599c785d300 in _start (/src/app/helper+0x21300) (BuildId: 26eb2005625f40f2862cebac0c5249ba4d751f01)
)") == "AddressSanitizer: heap-use-after-free in use_after_free() at /src/app/helper.cpp:14:12");
    // clang links the runtime into the program: its malloc is known only by name.
    CHECK(summary_of(R"(==16233==ERROR: LeakSanitizer: detected memory leaks

Direct leak of 40 byte(s) in 1 object(s) allocated from:
    #0 0x55eaaf13914e in malloc (/src/app/leak+0xa414e) (BuildId: 2fd45c31397d7e9e38b091996469c70ab676ae1f)
    #1 0x55eaaf17651a in leak_memory() /src/app/leak.cpp:4:55
)") == "LeakSanitizer: detected memory leaks in leak_memory() at /src/app/leak.cpp:4:55");
    CHECK(summary_of(R"(WARNING: ThreadSanitizer: data race (pid=16267)
  Write of size 4 at 0x563f6c1e86a8 by thread T1:
    #0 race_on_counter() /src/app/race.cpp:4:52 (race+0xd438f) (BuildId: abf44b2f2fd27aee11e727a6e50705ed41c1b756)
)") == "ThreadSanitizer: data race in race_on_counter() at /src/app/race.cpp:4:52");
}

TEST_CASE("a LeakSanitizer report names the first leak's allocating function, not malloc") {
    const auto scanner = scan(gcc_lsan_leak);
    CHECK(scanner.complete());
    CHECK(scanner.summary() ==
          "LeakSanitizer: detected memory leaks in leak_memory() at /src/app/leak.cpp:4");
}

TEST_CASE("a ThreadSanitizer report's kind leaves out the pid") {
    CHECK(summary_of(gcc_tsan_data_race) ==
          "ThreadSanitizer: data race in race_on_counter() at /src/app/race.cpp:4");
    CHECK(summary_of(R"(WARNING: ThreadSanitizer: lock-order-inversion (potential deadlock) (pid=7)
  Cycle in lock order graph: M0 (0x7b0c00000000) => M1 (0x7b0c00000040) => M0

  Mutex M1 acquired here while holding mutex M0 in main thread:
    #0 pthread_mutex_lock ../../../../src/libsanitizer/sanitizer_common/sanitizer_common_interceptors.inc:4324 (libtsan.so.2+0x53908)
    #1 lock_both() /src/app/locks.cpp:9 (locks+0x12ab)
)") == "ThreadSanitizer: lock-order-inversion (potential deadlock) in lock_both() at "
       "/src/app/locks.cpp:9");
    CHECK(summary_of(R"(WARNING: ThreadSanitizer: thread leak (pid=9)
  Thread T1 (tid=11, finished) created by main thread at:
    #0 pthread_create ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:1001 (libtsan.so.2+0x5e686)
    #1 start_worker() /src/app/leak.cpp:7 (leak+0x11d3)
)") == "ThreadSanitizer: thread leak in start_worker() at /src/app/leak.cpp:7");
    CHECK(summary_of(R"(WARNING: ThreadSanitizer: signal-unsafe call inside of a signal (pid=5)
    #0 malloc ../../../../src/libsanitizer/tsan/tsan_interceptors_posix.cpp:647 (libtsan.so.2+0x3d09b)
    #1 on_signal(int) /src/app/signal.cpp:6 (sig+0x1189)
)") == "ThreadSanitizer: signal-unsafe call inside of a signal in on_signal(int) at "
       "/src/app/signal.cpp:6");
}

TEST_CASE("an UndefinedBehaviorSanitizer runtime error carries its own location") {
    const auto scanner = scan(gcc_ubsan_overflow);
    CHECK(scanner.found());
    CHECK(scanner.summary() == std::string(ubsan_overflow_summary) + " at overflow.cpp:3:60");
}

TEST_CASE("an UndefinedBehaviorSanitizer stack adds the function and keeps the line's column") {
    CHECK(
        summary_of(
            R"(overflow.cpp:3:60: runtime error: signed integer overflow: 2147483647 + 1 cannot be represented in type 'int'
    #0 0x55fc272c0168 in overflow(int) /src/app/overflow.cpp:3
    #1 0x55fc272c017c in main /src/app/overflow.cpp:4
)") == std::string(ubsan_overflow_summary) + " in overflow(int) at overflow.cpp:3:60");
    // Without print_stacktrace, a frame-shaped line further down belongs to something else.
    CHECK(summary_of(std::string(gcc_ubsan_overflow) + "    #0 0x1 in other() /b.cpp:1\n") ==
          std::string(ubsan_overflow_summary) + " at overflow.cpp:3:60");
}

TEST_CASE("a MemorySanitizer report is summarised like AddressSanitizer's") {
    CHECK(summary_of(R"(==16360==WARNING: MemorySanitizer: use-of-uninitialized-value
    #0 0x5588534c6430 in use(int*) /src/app/msan.cpp:2:49
    #1 0x5588534c6496 in main /src/app/msan.cpp:3:42
)") == "MemorySanitizer: use-of-uninitialized-value in use(int*) at /src/app/msan.cpp:2:49");
}

TEST_CASE("coloured sanitizer output is read without its escapes") {
    CHECK(summary_of("=================================================================\n"
                     "\x1b[1m\x1b[31m==32624==ERROR: AddressSanitizer: heap-use-after-free on "
                     "address 0x602000000014 at pc 0x559edf8cb1f8 bp 0x7ffce2023a70 sp "
                     "0x7ffce2023a68\n"
                     "\x1b[1m\x1b[0m\x1b[1m\x1b[34mREAD of size 4 at 0x602000000014 thread "
                     "T0\x1b[1m\x1b[0m\n"
                     "    #0 0x559edf8cb1f7 in use_after_free() /src/app/helper.cpp:14\n") ==
          "AddressSanitizer: heap-use-after-free in use_after_free() at /src/app/helper.cpp:14");
    CHECK(
        summary_of("\x1b[1m\x1b[31mWARNING: ThreadSanitizer: data race (pid=324)\n"
                   "\x1b[1m\x1b[0m\x1b[1m\x1b[34m  Read of size 4 at 0x55e9d073909c by main "
                   "thread:\n"
                   "\x1b[1m\x1b[0m    #0 race_on_counter() /src/app/race.cpp:4 (race+0x1247)\n") ==
        "ThreadSanitizer: data race in race_on_counter() at /src/app/race.cpp:4");
    CHECK(summary_of("\x1b[1moverflow.cpp:3:60:\x1b[1m\x1b[31m runtime error: \x1b[1m\x1b[0m"
                     "\x1b[1msigned integer overflow: 2147483647 + 1 cannot be represented in "
                     "type 'int'\x1b[1m\x1b[0m\n") ==
          std::string(ubsan_overflow_summary) + " at overflow.cpp:3:60");
}

TEST_CASE("the summary grows as the report's lines arrive") {
    sanitizer_scanner scanner;
    scanner.feed_line("hello");
    CHECK_FALSE(scanner.found());
    CHECK(scanner.summary().empty());
    scanner.feed_line("==10865==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020");
    CHECK(scanner.found());
    CHECK_FALSE(scanner.complete());
    CHECK(scanner.summary() == "AddressSanitizer: heap-use-after-free");
    scanner.feed_line("READ of size 4 at 0x602000000014 thread T0");
    scanner.feed_line("    #0 0x7f83fc2ba038 in __asan_memcpy "
                      "../../../../src/libsanitizer/asan/asan_interceptors_memintrinsics.cpp:22");
    CHECK_FALSE(scanner.complete());
    CHECK(scanner.summary() == "AddressSanitizer: heap-use-after-free");
    scanner.feed_line("    #1 0x55c0368e71f7 in copy_out() /src/app/copy.cpp:8");
    CHECK(scanner.complete());
    CHECK(scanner.summary() == "AddressSanitizer: heap-use-after-free in copy_out() at "
                               "/src/app/copy.cpp:8");
}

TEST_CASE("a report amid other output is found, and only the first report counts") {
    std::string output = "server listening on :8080\nconfig: 3 workers\n";
    // A line of the program's stdout between the header and its stack.
    output += "==77==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6020 at pc 0x5\n"
              "worker 2 ready\n"
              "WRITE of size 1 at 0x6020 thread T0\n"
              "    #0 0x5 in fill(char*) /src/app/buffer.cpp:31\n"
              "request served\n";
    output += gcc_asan_use_after_free;
    output += gcc_tsan_data_race;
    CHECK(summary_of(output) ==
          "AddressSanitizer: heap-buffer-overflow in fill(char*) at /src/app/buffer.cpp:31");
    CHECK(summary_of(std::string("shutting down\n") + std::string(gcc_tsan_data_race) +
                     std::string(gcc_asan_use_after_free)) ==
          "ThreadSanitizer: data race in race_on_counter() at /src/app/race.cpp:4");
}

TEST_CASE("lines that only look like a sanitizer's are not a report") {
    const char* const almost[] = {
        "ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
        "==12==ERROR: AddressSanitizer heap-use-after-free",
        "==abc==ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
        "====ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
        "==12== ERROR: AddressSanitizer: heap-use-after-free",
        "==12==ERROR: SuperSanitizer: heap-use-after-free",
        "log: ==12==ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
        "test expects \"==12==ERROR: AddressSanitizer: heap-use-after-free\"",
        "==12==WARNING: AddressSanitizer failed to allocate 0x10000 bytes",
        "==12==WARNING: AddressSanitizer: something",
        "WARNING: MemorySanitizer: use-of-uninitialized-value",
        "note: WARNING: ThreadSanitizer: data race (pid=1)",
        "  WARNING: ThreadSanitizer: data race (pid=1)",
        "WARNING: ThreadSanitizer: memory layout is incompatible, possibly due to high-entropy "
        "ASLR. Re-execing with fixed virtual address space.",
        "WARNING:ThreadSanitizer: data race",
        "ThreadSanitizer: reported 1 warnings",
        "AddressSanitizer:DEADLYSIGNAL",
        "AddressSanitizer: heap-use-after-free",
        "the runtime error: was expected",
        "see foo.cpp: runtime error: overflow",
        "see foo.cpp:3:4: runtime error: overflow",
        "foo.cpp:x:4: runtime error: overflow",
        "foo.cpp:3:4:runtime error: overflow",
        ":3:4: runtime error: overflow",
        "foo.cpp:3:4: runtime error overflow",
        "SUMMARY: all tests passed",
        "SUMMARY: AddressSanitizer",
        "SUMMARY:AddressSanitizer: heap-use-after-free",
        "    #0 0x55c0368e71f7 in use_after_free() /src/app/helper.cpp:14",
        "    #0 race_on_counter() /src/app/race.cpp:4 (race+0x1247)",
        "",
        "\x1b",
        "\x1b[",
        "==",
        "==1==",
        "==1==ERROR: ",
    };
    for (const std::string line : almost) {
        INFO(line);
        sanitizer_scanner scanner;
        scanner.feed_line(line);
        CHECK_FALSE(scanner.found());
        CHECK(scanner.summary().empty());
    }
}

TEST_CASE("a report whose first stack is all runtime takes its frame from its SUMMARY line") {
    CHECK(summary_of(R"(==5==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020
READ of size 8 at 0x6020 thread T0
    #0 0x7f00 in __interceptor_memcpy (/usr/lib/x86_64-linux-gnu/libasan.so.8+0x3a9ab)
    #1 0x7f01 in __asan_memcpy (/usr/lib/x86_64-linux-gnu/libasan.so.8+0x3b000)

freed by thread T0 here:
    #0 0x7f02 in free (/usr/lib/x86_64-linux-gnu/libasan.so.8+0xd7000)
    #1 0x5501 in release() /src/app/pool.cpp:40

SUMMARY: AddressSanitizer: heap-use-after-free /src/app/pool.cpp:52 in take()
)") == "AddressSanitizer: heap-use-after-free in take() at /src/app/pool.cpp:52");
    // Its SUMMARY names a runtime frame too: the report has none.
    CHECK(summary_of(R"(==5==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020
    #0 0x7f00 in __interceptor_memcpy (/usr/lib/x86_64-linux-gnu/libasan.so.8+0x3a9ab)

SUMMARY: AddressSanitizer: heap-use-after-free (/usr/lib/x86_64-linux-gnu/libasan.so.8+0x3a9ab) in __interceptor_memcpy
)") == "AddressSanitizer: heap-use-after-free");
}

TEST_CASE("a frame without source names its module") {
    CHECK(summary_of(R"(==5==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000000
    #0 0x7f00 in parse_header (/usr/lib/libthing.so.1+0x1234)
)") == "AddressSanitizer: SEGV in parse_header (/usr/lib/libthing.so.1+0x1234)");
    CHECK(summary_of(R"(==5==ERROR: AddressSanitizer: SEGV on unknown address 0x000000000000
    #0 0x55c0368e71f7  (/src/app/helper+0x11f7)
)") == "AddressSanitizer: SEGV at (/src/app/helper+0x11f7)");
    CHECK(summary_of(R"(WARNING: ThreadSanitizer: data race (pid=1)
    #0 <null> <null> (libworker.so+0xd44a2)
)") == "ThreadSanitizer: data race at (libworker.so+0xd44a2)");
}

TEST_CASE("a SUMMARY line stands for its report when the header was lost") {
    CHECK(summary_of("SUMMARY: AddressSanitizer: heap-use-after-free /src/app/helper.cpp:14 in "
                     "use_after_free()\n") ==
          "AddressSanitizer: heap-use-after-free in use_after_free() at /src/app/helper.cpp:14");
    CHECK(summary_of("SUMMARY: ThreadSanitizer: lock-order-inversion (potential deadlock) "
                     "/src/app/locks.cpp:9 in lock_both()\n") ==
          "ThreadSanitizer: lock-order-inversion (potential deadlock) in lock_both() at "
          "/src/app/locks.cpp:9");
    CHECK(summary_of("SUMMARY: AddressSanitizer: 48 byte(s) leaked in 2 allocation(s).\n") ==
          "AddressSanitizer: 48 byte(s) leaked in 2 allocation(s).");
    CHECK(summary_of("SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior overflow.cpp:3:60 "
                     "in \n") == "UndefinedBehaviorSanitizer: undefined-behavior at "
                                 "overflow.cpp:3:60");
}

TEST_CASE("CRLF line ends are ignored") {
    CHECK(summary_of("==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\r\n"
                     "    #0 0x1 in f() /a.cpp:1\r\n") ==
          "AddressSanitizer: heap-use-after-free in f() at /a.cpp:1");
}

TEST_CASE("a 1 MB line costs bounded work and the summary stays small") {
    const std::size_t mb = std::size_t{1} << 20;
    const auto summary_size_limit = 3 * sanitizer_scanner::max_field_size + 64;

    // Shapes that would make a careless scanner backtrack or rescan.
    std::vector<std::string> lines = {
        std::string(mb, 'x'),
        "==" + std::string(mb, '1'),
        std::string(mb, ':'),
        std::string(mb, ' '),
        std::string(mb, '\r'),
        std::string(mb, '\x1b'),
        [&] {
            std::string s;
            while (s.size() < mb)
                s += "a:1:";
            return s;
        }(),
        [&] {
            std::string s;
            while (s.size() < mb)
                s += "\x1b[1;31";
            return s;
        }(),
        [&] {
            std::string s = "SUMMARY: AddressSanitizer: x";
            while (s.size() < mb)
                s += " a:1 i";
            return s;
        }(),
    };
    const auto start = std::chrono::steady_clock::now();
    for (const auto& line : lines) {
        sanitizer_scanner scanner;
        for (int i = 0; i < 20; ++i)
            scanner.feed_line(line);
        CHECK(scanner.summary().size() < summary_size_limit);
    }

    // A header, a frame and a SUMMARY, each a megabyte long.
    sanitizer_scanner scanner;
    scanner.feed_line("==1==ERROR: AddressSanitizer: " + std::string(mb, 'k'));
    scanner.feed_line("    #0 0x1 in " + std::string(mb, 'f') + "() /src/app/long.cpp:7");
    CHECK(scanner.complete());
    const auto summary = scanner.summary();
    CHECK(summary.size() < summary_size_limit);
    CHECK(summary.starts_with("AddressSanitizer: kkkk"));
    CHECK(contains(summary, " in ffff"));
    CHECK(summary.ends_with(" at /src/app/long.cpp:7"));

    sanitizer_scanner fallback;
    fallback.feed_line("SUMMARY: AddressSanitizer: " + std::string(mb, 'k') +
                       " /src/app/long.cpp:7 in f()");
    CHECK(fallback.found());
    CHECK(fallback.summary().size() < summary_size_limit);

    // Bounded work makes this milliseconds; reading whole lines quadratically, hours.
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
}

TEST_CASE("find_sanitizer_report returns the first report's summary, or nothing") {
    const auto lines = split_lines(std::string("ok\n") + std::string(gcc_lsan_leak) +
                                   std::string(gcc_tsan_data_race));
    CHECK(find_sanitizer_report(lines) ==
          "LeakSanitizer: detected memory leaks in leak_memory() at /src/app/leak.cpp:4");
    const std::vector<std::string> clean = {"all good", "SUMMARY: 3 tests passed"};
    CHECK(find_sanitizer_report(clean).empty());
    CHECK(find_sanitizer_report({}).empty());
}

namespace {

[[maybe_unused]] std::string program(const char* name) {
    return std::string(WARDEN_TEST_PROGRAMS_DIR) + "/" + name;
}

// Runs a sanitizer program under `options` (its *SAN_OPTIONS, so that none from the caller's
// environment apply) and returns what it printed and its summary.
[[maybe_unused]] warden_test::program_result run_sanitized(const std::string& options,
                                                           const std::string& path) {
    return warden_test::run_program("env -u ASAN_OPTIONS -u LSAN_OPTIONS -u TSAN_OPTIONS "
                                    "-u UBSAN_OPTIONS " +
                                    options + " " + path);
}

// TSan's fixed shadow layout fails with more than 28 bits of mmap randomisation; .ci/run runs
// its TSan stage without ASLR then, and so does this.
[[maybe_unused]] std::string without_aslr_if_tsan_needs_it() {
    std::ifstream in("/proc/sys/vm/mmap_rnd_bits");
    int bits = 28;
    in >> bits;
    return bits > 28 ? "setarch \"$(uname -m)\" -R " : "";
}

} // namespace

#ifdef WARDEN_TEST_HAVE_ASAN_PROGRAM
TEST_CASE("a real AddressSanitizer heap-use-after-free is summarised with the program's "
          "function") {
    for (const char* colour : {"never", "always"}) {
        INFO(colour);
        const auto r = run_sanitized(std::string("ASAN_OPTIONS=detect_leaks=0:color=") + colour,
                                     program("warden_asan_program"));
        INFO(r.output);
        CHECK(r.exit_code == 1);
        CHECK(contains(r.output, "reading freed memory"));
        const auto summary = summary_of(r.output);
        CHECK(summary.starts_with("AddressSanitizer: heap-use-after-free in read_freed_int() at "));
        CHECK(contains(summary, "sanitizer_asan.cpp:"));
    }
}
#endif

#ifdef WARDEN_TEST_HAVE_LSAN_PROGRAM
TEST_CASE("a real LeakSanitizer report fails a program that returned 0") {
    const auto r = run_sanitized("ASAN_OPTIONS=detect_leaks=1", program("warden_lsan_program"));
    INFO(r.output);
    CHECK(r.exit_code == 1); // ASan's exit code; standalone LSan's is 23
    CHECK(contains(r.output, "leaked 40 bytes"));
    const auto summary = summary_of(r.output);
    CHECK(summary.starts_with("LeakSanitizer: detected memory leaks in leak_a_buffer() at "));
    CHECK(contains(summary, "sanitizer_lsan.cpp:"));
}
#endif

#ifdef WARDEN_TEST_HAVE_TSAN_PROGRAM
TEST_CASE("a real ThreadSanitizer data race is summarised with the racing function") {
    const auto r = run_sanitized("TSAN_OPTIONS=color=never",
                                 without_aslr_if_tsan_needs_it() + program("warden_tsan_program"));
    INFO(r.output);
    CHECK(r.exit_code == 66);
    // 1 or 2: the increments overlap in time (sanitizer_tsan.cpp), and one may be lost.
    CHECK(contains(r.output, "counter "));
    const auto summary = summary_of(r.output);
    CHECK(summary.starts_with("ThreadSanitizer: data race in race_on_counter() at "));
    CHECK(contains(summary, "sanitizer_tsan.cpp:"));
}
#endif

#ifdef WARDEN_TEST_HAVE_UBSAN_PROGRAM
TEST_CASE("a real UndefinedBehaviorSanitizer overflow is a report though the program exits 0") {
    const auto r = run_sanitized("UBSAN_OPTIONS=halt_on_error=0", program("warden_ubsan_program"));
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "result -2147483648"));
    const auto summary = summary_of(r.output);
    CHECK(summary.starts_with("UndefinedBehaviorSanitizer: signed integer overflow: 2147483647 + "
                              "1 cannot be represented in type 'int' at "));
    CHECK(contains(summary, "sanitizer_ubsan.cpp:"));

    const auto with_stack = run_sanitized("UBSAN_OPTIONS=halt_on_error=0:print_stacktrace=1",
                                          program("warden_ubsan_program"));
    INFO(with_stack.output);
    CHECK(with_stack.exit_code == 0);
    CHECK(contains(summary_of(with_stack.output), " in add_one(int) at "));
}
#endif
