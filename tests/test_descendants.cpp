// Descendants that leave their process's group (setsid, a double fork) end with it, and only
// they: docs/processes.md ("Descendants").

#include <warden/process.hpp>

#include <warden/errors.hpp>
#include <warden/supervisor.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Neither running nor a zombie of ours: a descendant that was killed and reaped.
bool gone(pid_t pid) {
    return ::kill(pid, 0) == -1 && errno == ESRCH;
}

// A shell that starts `grandchild` in a new session (it prints its own pid, holding the
// output pipe), and exits with `code` when the test sends it SIGUSR1. The trap interrupts
// `wait`, so the test decides when it ends, without sleeping.
std::vector<std::string>
leaves_session(int code,
               const std::string& grandchild = "setsid sh -c 'echo $$; exec sleep 1000' &") {
    return {"sh", "-c",
            "trap 'exit " + std::to_string(code) + "' USR1; " + grandchild + " sleep 1000 & wait"};
}

// Kills what a failed check left behind.
struct kill_on_exit {
    pid_t pid;
    ~kill_on_exit() {
        if (pid > 0 && ::kill(pid, SIGKILL) == 0)
            ::waitpid(pid, nullptr, WNOHANG);
    }
};

pid_t grandchild_of(warden::process& p) {
    return std::stoi(p.wait_for_line_blocking("^[0-9]+$", 30s));
}

} // namespace

TEST_CASE("a descendant that called setsid ends with its process, which still succeeds") {
    pid_t grandchild = -1;
    {
        warden::supervisor sup;
        auto& p = sup.spawn_process({.argv = leaves_session(0)});
        grandchild = grandchild_of(p);
        kill_on_exit guard{grandchild};
        REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
        sup.wait();
        CHECK(sup.failures().empty());
        // Killed and reaped before the process's end was recorded.
        CHECK(gone(grandchild));
        const auto dump = sup.dump();
        CHECK(contains(dump, "left running, killed: pid " + std::to_string(grandchild) +
                                 " (sleep 1000)"));
    }
    CHECK(gone(grandchild));
}

TEST_CASE("a double-forked daemon in a new session ends with its process") {
    warden::supervisor sup;
    // The subshell exits at once: the daemon is an orphan while its process still runs.
    auto& p = sup.spawn_process(
        {.argv = leaves_session(0, "(setsid sh -c 'echo $$; exec sleep 1000' &);")});
    const pid_t daemon = grandchild_of(p);
    kill_on_exit guard{daemon};
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    sup.wait();
    CHECK(gone(daemon));
}

TEST_CASE("a failing process's report names the descendants it left running") {
    warden::supervisor sup;
    auto& p = sup.spawn_process({.argv = leaves_session(3)});
    const pid_t grandchild = grandchild_of(p);
    kill_on_exit guard{grandchild};
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    try {
        sup.wait();
        FAIL("the process did not fail");
    } catch (const warden::process_error& e) {
        CHECK(e.exit_code() == 3);
        const std::string named = "pid " + std::to_string(grandchild) + " (sleep 1000)";
        CHECK(std::find(e.left_running().begin(), e.left_running().end(), named) !=
              e.left_running().end());
        CHECK(contains(e.what(), "left running, killed: " + named));
    }
    CHECK(gone(grandchild));
}

TEST_CASE("an exit is seen at once while a descendant in another session holds the output pipe") {
    warden::supervisor sup;
    // The grandchild's stdout is the process's output pipe: no EOF comes while it runs.
    auto& p = sup.spawn_process({.argv = leaves_session(3)});
    const pid_t grandchild = grandchild_of(p);
    kill_on_exit guard{grandchild};
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    // Far more than needed: a wait for the pipe's EOF would run into it instead.
    CHECK_THROWS_AS(sup.wait_for(30s), warden::process_error);
    CHECK(gone(grandchild));
}

TEST_CASE("a forked child's descendant in a new session ends with the child") {
    warden::supervisor sup;
    auto& p = sup.spawn_forked([] {
        // The programs f starts inherit the child's WARDEN_LINEAGE.
        FILE* in = ::popen("setsid sh -c 'echo $$; exec sleep 1000 >/dev/null' &", "r");
        if (in == nullptr)
            throw std::runtime_error("popen failed");
        char line[32] = {};
        const bool read = std::fgets(line, sizeof line, in) != nullptr;
        ::pclose(in);
        if (!read)
            throw std::runtime_error("no pid from the grandchild");
        std::printf("%s", line);
    });
    const pid_t grandchild = grandchild_of(p);
    kill_on_exit guard{grandchild};
    sup.wait();
    CHECK(gone(grandchild));
}

TEST_CASE("destroying the supervisor kills a descendant in a new session") {
    pid_t grandchild = -1;
    {
        warden::supervisor sup;
        auto& p = sup.spawn_process(
            {.argv = {"sh", "-c", "setsid sh -c 'echo $$; exec sleep 1000' & wait"}});
        grandchild = grandchild_of(p);
    }
    kill_on_exit guard{grandchild};
    CHECK(gone(grandchild));
}

TEST_CASE("processes the program started itself, and their orphans, are not warden's") {
    warden::supervisor sup;
    // Makes this program the subreaper before the orphan below is made.
    sup.spawn_process({.argv = {"true"}});
    sup.wait();

    // A child of the program's own, and an orphan of another, both children of this program.
    pid_t own = -1;
    char* const sleep_argv[] = {const_cast<char*>("sleep"), const_cast<char*>("1000"), nullptr};
    REQUIRE(::posix_spawnp(&own, "sleep", nullptr, nullptr, sleep_argv, environ) == 0);
    kill_on_exit own_guard{own};
    FILE* in = ::popen("setsid sh -c 'echo $$; exec sleep 1000 >/dev/null' &", "r");
    REQUIRE(in != nullptr);
    char line[32] = {};
    REQUIRE(std::fgets(line, sizeof line, in) != nullptr);
    ::pclose(in);
    const pid_t orphan = std::stoi(line);
    kill_on_exit orphan_guard{orphan};

    // A warden process that leaves a descendant: its end looks through all of this program's
    // children.
    auto& p = sup.spawn_process({.argv = leaves_session(0)});
    const pid_t grandchild = grandchild_of(p);
    kill_on_exit guard{grandchild};
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    sup.wait();
    CHECK(gone(grandchild));

    // Untouched, and still the program's to reap.
    for (const pid_t pid : {own, orphan}) {
        CAPTURE(pid);
        CHECK(::kill(pid, 0) == 0);
        CHECK(::waitpid(pid, nullptr, WNOHANG) == 0);
        REQUIRE(::kill(pid, SIGKILL) == 0);
        int status = 0;
        CHECK(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status));
    }
}
