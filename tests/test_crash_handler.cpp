#include "crash_handler.hpp"
#include "crash_text.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

using warden::detail::install_crash_handlers;

namespace {

// What the parent shows of a crash dump: its frames, symbolised as process_crashed does.
std::string symbolise_crash_dump(std::string_view raw) {
    return warden::detail::crash_text(warden::detail::crash_dump_frames(raw)).stack();
}

// Volatile so that the compiler can neither prove the write is to null (GCC would turn it
// into a trap, which is SIGILL) nor prove the recursion endless (-Winfinite-recursion).
int* volatile null_target = nullptr;
volatile bool keep_recursing = true;

// The sanitizer build would report the deliberate write instead of letting it crash.
[[gnu::noinline, gnu::no_sanitize("undefined")]] void crash_by_null_write() {
    *null_target = 42;
}

[[gnu::noinline]] void crash_by_abort() {
    std::abort();
}

// Passing our frame's buffer down keeps each frame alive during the call, which rules out
// turning the recursion into a tail call or a loop that would spin instead of overflowing.
[[gnu::noinline]] int recurse_without_end(volatile char* caller_frame) {
    volatile char frame[256];
    frame[0] = caller_frame[0];
    return keep_recursing ? recurse_without_end(frame) : frame[0];
}

void overflow_the_stack() {
    volatile char start[1] = {0};
    recurse_without_end(start);
}

struct child_outcome {
    int status = 0;
    std::string dump;
};

// Runs `crash` in a forked child with the handlers writing to a pipe; reads the pipe to EOF
// (the child's death closes the only write end) and reaps the child.
child_outcome run_crashing_child(void (*crash)()) {
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    const pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        install_crash_handlers(fds[1]);
        crash();
        _exit(0); // only reached if the crash did not happen
    }
    close(fds[1]);
    child_outcome outcome;
    if (pid > 0) {
        char buffer[4096];
        for (;;) {
            const ssize_t n = read(fds[0], buffer, sizeof buffer);
            if (n > 0) {
                outcome.dump.append(buffer, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                break;
            }
        }
        while (waitpid(pid, &outcome.status, 0) == -1 && errno == EINTR) {
        }
    }
    close(fds[0]);
    REQUIRE(pid > 0);
    return outcome;
}

void check_killed_by(const child_outcome& outcome, int sig) {
    REQUIRE(WIFSIGNALED(outcome.status));
    CHECK(WTERMSIG(outcome.status) == sig);
    // Whole pointers, ended by a null one, and no more than the 128-frame bound.
    CHECK(outcome.dump.size() % sizeof(void*) == 0);
    CHECK(outcome.dump.size() >= 2 * sizeof(void*));
    CHECK(outcome.dump.size() <= 129 * sizeof(void*));
}

} // namespace

TEST_CASE("A null pointer write in the child dumps a stack that names the crashing function") {
    const child_outcome outcome = run_crashing_child(crash_by_null_write);
    check_killed_by(outcome, SIGSEGV);
    const std::string text = symbolise_crash_dump(outcome.dump);
    INFO(text);
    // Frame 0 is the faulting function itself, not the handler or the signal trampoline.
    CHECK(text.substr(0, text.find('\n')).find("crash_by_null_write") != std::string::npos);
    CHECK(text.find("run_crashing_child") != std::string::npos);
    CHECK(text.find("on_crash_signal") == std::string::npos);
}

TEST_CASE("abort() in the child dumps a stack and the child still dies by SIGABRT") {
    const child_outcome outcome = run_crashing_child(crash_by_abort);
    check_killed_by(outcome, SIGABRT);
    const std::string text = symbolise_crash_dump(outcome.dump);
    INFO(text);
    CHECK(text.find("crash_by_abort") != std::string::npos);
}

TEST_CASE("Infinite recursion in the child dumps a bounded stack and dies by SIGSEGV") {
    const child_outcome outcome = run_crashing_child(overflow_the_stack);
    check_killed_by(outcome, SIGSEGV);
    // A stack that deep always fills the dump: 128 frames and the terminator.
    CHECK(outcome.dump.size() == 129 * sizeof(void*));
    const std::string text = symbolise_crash_dump(outcome.dump);
    INFO(text);
    CHECK(text.find("recurse_without_end") != std::string::npos);
}

TEST_CASE("Each handled signal raised in the child kills it by that same signal") {
    for (const int sig : {SIGBUS, SIGFPE, SIGILL, SIGSEGV, SIGABRT}) {
        CAPTURE(sig);
        static int to_raise;
        to_raise = sig;
        const child_outcome outcome = run_crashing_child([] { raise(to_raise); });
        check_killed_by(outcome, sig);
    }
}

TEST_CASE("Symbolising an empty dump gives an empty text") {
    CHECK(symbolise_crash_dump("") == "");
}

TEST_CASE("Symbolising garbage of any length neither crashes nor runs away") {
    std::mt19937_64 random(7);
    for (std::size_t length = 1; length < 64; ++length) {
        std::string junk;
        for (std::size_t i = 0; i < length; ++i) {
            junk.push_back(static_cast<char>(random() & 0xff));
        }
        CAPTURE(length);
        const std::string text = symbolise_crash_dump(junk);
        if (length < sizeof(void*)) {
            CHECK(text.empty());
        }
    }
    CHECK(symbolise_crash_dump(std::string(800, '\xff')).size() > 0);
    CHECK(symbolise_crash_dump(std::string(64, '\0')).empty());

    // A megabyte of junk is cut to a few hundred frames rather than symbolised in full.
    std::string big;
    for (int i = 0; i < (1 << 17); ++i) {
        const std::uint64_t word = random();
        big.append(reinterpret_cast<const char*>(&word), sizeof word);
    }
    const std::string text = symbolise_crash_dump(big);
    const auto lines = std::count(text.begin(), text.end(), '\n');
    CHECK(lines > 0);
    CHECK(lines <= 258);
}

TEST_CASE("A dump of a single frame without its terminator is still symbolised") {
    void* const frame = reinterpret_cast<void*>(&crash_by_null_write);
    const std::string text =
        symbolise_crash_dump(std::string_view(reinterpret_cast<const char*>(&frame), sizeof frame));
    INFO(text);
    CHECK(text.find("crash_by_null_write") != std::string::npos);
}
