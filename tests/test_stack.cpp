#include "stack.hpp"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/stacktrace/stacktrace.hpp>

#include <doctest/doctest.h>

using warden::detail::capture_stack;
using warden::detail::stack_capture;
using warden::detail::symbolise;
using warden::detail::symbolise_frames;

namespace {

std::string first_line(const std::string& text) {
    return text.substr(0, text.find('\n'));
}

std::string without_first_line(const std::string& text) {
    const auto end = text.find('\n');
    return end == std::string::npos ? std::string() : text.substr(end + 1);
}

// The asm statements after each call keep the calls from becoming tail calls, which would
// take these functions' frames off the stack.
[[gnu::noinline]] std::shared_ptr<const stack_capture> capture_in_stack_probe() {
    auto stack = capture_stack(0);
    asm volatile("" ::: "memory");
    return stack;
}

[[gnu::noinline]] std::shared_ptr<const stack_capture> capture_for_my_caller() {
    auto stack = capture_stack(1);
    asm volatile("" ::: "memory");
    return stack;
}

[[gnu::noinline]] std::shared_ptr<const stack_capture> capture_one_level_up_probe() {
    auto stack = capture_for_my_caller();
    asm volatile("" ::: "memory");
    return stack;
}

// noipa: identical bodies, which identical code folding would otherwise merge into one.
[[gnu::noipa]] std::shared_ptr<const stack_capture>
spawn_from_site_a(warden::detail::spawn_stack_cache& cache) {
    auto stack = cache.capture(0);
    asm volatile("" ::: "memory");
    return stack;
}

[[gnu::noipa]] std::shared_ptr<const stack_capture>
spawn_from_site_b(warden::detail::spawn_stack_cache& cache) {
    auto stack = cache.capture(0);
    asm volatile("" ::: "memory");
    return stack;
}

struct two_captures {
    std::shared_ptr<const stack_capture> ours;
    std::vector<const void*> boosts;
};

// Both captures from the same frame: every frame but the first (two different call sites in
// this function) must be the same return address.
[[gnu::noinline]] two_captures capture_both_ways() {
    two_captures both;
    both.ours = capture_stack(0);
    const boost::stacktrace::stacktrace trace(0, 32);
    for (const auto& frame : trace)
        both.boosts.push_back(frame.address());
    asm volatile("" ::: "memory");
    return both;
}

// The child's text, read until the child is gone or the deadline passes (then the child is
// killed: a hang fails the test instead of stalling the suite).
struct child_result {
    std::string text;
    bool finished_in_time = false;
    int status = 0;
};

child_result read_child(pid_t child, int read_fd, std::chrono::seconds limit) {
    child_result result;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        pollfd watched{read_fd, POLLIN, 0};
        const int ready = ::poll(&watched, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            break;
        char buffer[4096];
        const ssize_t n = ::read(read_fd, buffer, sizeof buffer);
        if (n > 0) {
            result.text.append(buffer, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        result.finished_in_time = true; // end of file: the child has exited
        break;
    }
    if (!result.finished_in_time)
        ::kill(child, SIGKILL);
    ::close(read_fd);
    ::waitpid(child, &result.status, 0);
    return result;
}

void write_all(int fd, const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0 && errno != EINTR)
            return;
        if (n > 0)
            done += static_cast<std::size_t>(n);
    }
}

enum class child_ending { underscore_exit, exit };

// Forks after the parent's symbolising thread is running (so the child inherits its state but
// not the thread), symbolises in the child and sends the text back.
child_result symbolise_in_forked_child(const stack_capture& stack, child_ending ending) {
    REQUIRE(symbolise(stack).find("capture_in_stack_probe") != std::string::npos);
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    // Nothing buffered that the child's exit() would print a second time.
    std::cout.flush();
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(fds[0]);
        // The write end stays open until the process is gone, so the parent's end of file
        // also means the child got through exit().
        write_all(fds[1], symbolise(stack));
        if (ending == child_ending::exit)
            std::exit(0); // runs the static destructors, the symboliser's among them
        ::_exit(0);
    }
    ::close(fds[1]);
    return read_child(child, fds[0], std::chrono::seconds(60));
}

} // namespace

TEST_CASE("a captured stack starts at the function that called capture_stack") {
    const std::string text = symbolise(*capture_in_stack_probe());
    INFO(text);
    CHECK(first_line(text).starts_with(" 0# "));
    CHECK(first_line(text).find("capture_in_stack_probe") != std::string::npos);
    CHECK(text.find("test_stack.cpp") != std::string::npos);
}

TEST_CASE("capture_stack's skip leaves out that many callers") {
    const std::string text = symbolise(*capture_one_level_up_probe());
    INFO(text);
    CHECK(first_line(text).find("capture_one_level_up_probe") != std::string::npos);
    CHECK(text.find("capture_for_my_caller") == std::string::npos);
}

TEST_CASE("spawns from one loop share a spawn stack; each other call site gets its own") {
    warden::detail::spawn_stack_cache cache;
    std::vector<std::shared_ptr<const stack_capture>> loop;
    for (int i = 0; i < 3; ++i)
        loop.push_back(spawn_from_site_a(cache));
    CHECK(loop[1] == loop[0]);
    CHECK(loop[2] == loop[0]);
    // Alternating sites: the one remembered capture never stands in for another site's.
    for (int i = 0; i < 3; ++i) {
        const auto a = spawn_from_site_a(cache);
        const auto b = spawn_from_site_b(cache);
        CHECK(a != b);
        CHECK(first_line(symbolise(*a)).find("spawn_from_site_a") != std::string::npos);
        CHECK(first_line(symbolise(*b)).find("spawn_from_site_b") != std::string::npos);
    }
}

TEST_CASE("capture_stack uses libunwind when the library can be loaded (not under TSan)") {
    void* library = ::dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    const bool available = library != nullptr && ::dlsym(library, "unw_backtrace") != nullptr;
    if (library != nullptr)
        ::dlclose(library);
#if defined(__SANITIZE_THREAD__)
    (void)available; // TSan builds always take Boost's way (src/stack.cpp says why)
    CHECK(warden::detail::stack_capture_backend() == "boost");
#else
    CHECK(warden::detail::stack_capture_backend() == (available ? "libunwind" : "boost"));
#endif
}

TEST_CASE("capture_stack records the same frames as Boost.Stacktrace") {
    const two_captures both = capture_both_ways();
    const std::string ours = symbolise(*both.ours);
    const std::string boosts = symbolise_frames(both.boosts);
    INFO(ours);
    INFO(boosts);
    CHECK(first_line(ours).find("capture_both_ways") != std::string::npos);
    CHECK(first_line(boosts).find("capture_both_ways") != std::string::npos);
    CHECK(without_first_line(ours) == without_first_line(boosts));
}

TEST_CASE("stacks symbolised from many fresh threads are all symbolised on one thread") {
    const auto stack = capture_in_stack_probe();
    constexpr std::size_t caller_count = 6;
    std::vector<std::string> texts(caller_count);
    std::vector<std::thread> callers;
    for (std::size_t i = 0; i < caller_count; ++i)
        callers.emplace_back([&texts, &stack, i] { texts[i] = symbolise(*stack); });
    for (auto& caller : callers)
        caller.join();
    for (const auto& text : texts) {
        CHECK(first_line(text).find("capture_in_stack_probe") != std::string::npos);
        CHECK(text == texts.front());
    }
    CHECK(symbolise(*stack) == texts.front()); // and from this thread too
    // One libbacktrace state in this process, however many threads asked.
    CHECK(warden::detail::threads_that_symbolised() == 1);
}

TEST_CASE("symbolise_frames keeps a lone frame and stops at a null one") {
    const auto stack = capture_in_stack_probe();
    const std::string full = symbolise(*stack);
    std::vector<const void*> frames;
    boost::stacktrace::stacktrace here(0, 1);
    REQUIRE(here.size() == 1);
    frames.push_back(here[0].address());
    CHECK(symbolise_frames(frames).starts_with(" 0# "));
    CHECK(symbolise_frames(frames).find('\n') == symbolise_frames(frames).size() - 1);
    frames.push_back(nullptr);
    frames.push_back(here[0].address());
    CHECK(symbolise_frames(frames) == symbolise_frames(std::span(frames.data(), 1)));
    CHECK(symbolise_frames({}).empty());
}

TEST_CASE("a forked child symbolises by itself instead of waiting for the parent's thread") {
    const auto stack = capture_in_stack_probe();
    SUBCASE("the child leaves by _exit") {
        const child_result result =
            symbolise_in_forked_child(*stack, child_ending::underscore_exit);
        REQUIRE(result.finished_in_time);
        CHECK(WIFEXITED(result.status));
        CHECK(result.text == symbolise(*stack));
    }
    SUBCASE("the child leaves by exit, running the symboliser's static destructor") {
        const child_result result = symbolise_in_forked_child(*stack, child_ending::exit);
        REQUIRE(result.finished_in_time);
        CHECK(WIFEXITED(result.status));
        CHECK(WEXITSTATUS(result.status) == 0);
        CHECK(result.text == symbolise(*stack));
    }
}
