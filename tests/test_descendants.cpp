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
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "descendants.hpp"
#include "helpers.hpp"

using namespace std::chrono_literals;

namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
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

// A process the test checks on, through a pidfd opened while it is known to run: by the time
// a check comes, its pid may be another process's (pid_max is 32768 here, and parallel tests
// recycle pids fast), so nothing is ever asked or signalled by pid alone. Kills what a failed
// check left behind.
class watched {
  public:
    explicit watched(pid_t pid)
        : pid_(pid)
        , fd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {
        REQUIRE(fd_ >= 0);
    }
    ~watched() {
        if (!ended())
            ::syscall(SYS_pidfd_send_signal, fd_, SIGKILL, nullptr, 0);
        ::close(fd_);
    }
    watched(const watched&) = delete;
    watched& operator=(const watched&) = delete;

    pid_t pid() const { return pid_; }
    bool ended() const { return wait_until_ended(0ms); }
    bool wait_until_ended(std::chrono::milliseconds limit) const {
        pollfd p{fd_, POLLIN, 0};
        return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
    }
    // Ended, and not a zombie of ours: killed and reaped.
    bool gone() const { return ended() && warden_test::reaped_or_not_ours(fd_); }

  private:
    pid_t pid_;
    int fd_;
};

// `sleep 1000`, a child of this program that warden did not start.
pid_t spawn_sleep() {
    pid_t pid = -1;
    char* const argv[] = {const_cast<char*>("sleep"), const_cast<char*>("1000"), nullptr};
    REQUIRE(::posix_spawnp(&pid, "sleep", nullptr, nullptr, argv, environ) == 0);
    return pid;
}

// Handed to warden as a descendant its sweep killed; the pid is still this child's (unreaped).
void keep_as_killed(pid_t pid) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    REQUIRE(pidfd >= 0);
    warden::detail::keep_killed(pid, pidfd);
}

// The pid the process's grandchild printed.
pid_t printed_pid(warden::process& p) {
    return std::stoi(p.wait_for_line_blocking("^[0-9]+$", 30s));
}

// The same, once the grandchild runs `sleep`: it prints its pid just before its exec, and a
// sweep that came in between would name the shell it was (a loaded machine, ctest -j2).
pid_t grandchild_of(warden::process& p) {
    const pid_t pid = printed_pid(p);
    const auto runs_sleep = [path = "/proc/" + std::to_string(pid) + "/comm"] {
        std::ifstream comm(path);
        std::string name;
        return std::getline(comm, name) && name == "sleep";
    };
    REQUIRE(warden_test::once_settled(runs_sleep, 1, 10s) == 1);
    return pid;
}

} // namespace

TEST_CASE("a descendant that called setsid ends with its process, which still succeeds") {
    std::optional<watched> grandchild;
    {
        warden::supervisor sup;
        auto& p = sup.spawn_process({.argv = leaves_session(0)});
        grandchild.emplace(grandchild_of(p));
        REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
        sup.wait();
        CHECK(sup.failures().empty());
        // Killed and reaped before the process's end was recorded.
        CHECK(grandchild->gone());
        const auto dump = sup.dump();
        CHECK(contains(dump, "left running, killed: pid " + std::to_string(grandchild->pid()) +
                                 " (sleep 1000)"));
    }
    CHECK(grandchild->gone());
}

TEST_CASE("a double-forked daemon in a new session ends with its process") {
    warden::supervisor sup;
    // The subshell exits at once: the daemon is an orphan while its process still runs.
    auto& p = sup.spawn_process(
        {.argv = leaves_session(0, "(setsid sh -c 'echo $$; exec sleep 1000' &);")});
    const watched daemon(grandchild_of(p));
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    sup.wait();
    CHECK(daemon.gone());
}

TEST_CASE("a failing process's report names the descendants it left running") {
    warden::supervisor sup;
    auto& p = sup.spawn_process({.argv = leaves_session(3)});
    const watched grandchild(grandchild_of(p));
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    try {
        sup.wait();
        FAIL("the process did not fail");
    } catch (const warden::process_error& e) {
        CHECK(e.exit_code() == 3);
        const std::string named = "pid " + std::to_string(grandchild.pid()) + " (sleep 1000)";
        CHECK(std::find(e.left_running().begin(), e.left_running().end(), named) !=
              e.left_running().end());
        CHECK(contains(e.what(), "left running, killed: " + named));
    }
    CHECK(grandchild.gone());
}

TEST_CASE("an exit is seen at once while a descendant in another session holds the output pipe") {
    warden::supervisor sup;
    // The grandchild's stdout is the process's output pipe: no EOF comes while it runs.
    auto& p = sup.spawn_process({.argv = leaves_session(3)});
    const watched grandchild(grandchild_of(p));
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    // Far more than needed: a wait for the pipe's EOF would run into it instead.
    CHECK_THROWS_AS(sup.wait_for(30s), warden::process_error);
    CHECK(grandchild.gone());
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
        // Ends when the test says, once it watches the grandchild: the grandchild ends with
        // the child.
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        ::pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
        std::printf("%s", line);
        std::fflush(stdout);
        int received = 0;
        ::sigwait(&usr1, &received);
    });
    const watched grandchild(grandchild_of(p));
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    sup.wait();
    CHECK(grandchild.gone());
}

TEST_CASE("destroying the supervisor kills a descendant in a new session") {
    std::optional<watched> grandchild;
    {
        warden::supervisor sup;
        auto& p = sup.spawn_process(
            {.argv = {"sh", "-c", "setsid sh -c 'echo $$; exec sleep 1000' & wait"}});
        grandchild.emplace(grandchild_of(p));
    }
    CHECK(grandchild->gone());
}

// The zombie of a process that left the group has no environment, and its group and session
// are its own: only the pidfd warden took below the process when it signalled the group says
// whose it is. It is how a descendant that was inside setsid() when the cancellation's SIGTERM
// came ends up (docs/processes.md); this one gets there by exiting under a parent that never
// reaps, so the test does not depend on that race.
TEST_CASE("a descendant in a new session that ended before its process was cancelled is reaped") {
    std::optional<watched> grandchild;
    {
        warden::supervisor sup;
        auto& p =
            sup.spawn_process({.argv = {"sh", "-c", "setsid sh -c 'echo $$' & exec sleep 1000"}});
        grandchild.emplace(printed_pid(p));
        REQUIRE(grandchild->wait_until_ended(30s)); // a zombie under `sleep`, its parent
    }
    CHECK(grandchild->gone());
}

namespace {

// A shell with `count` background `sleep 1000`, all ignoring SIGTERM (an ignored signal stays
// ignored across exec), so a cancellation leaves the tree whole until the test kills it.
warden::process& tree_ignoring_sigterm(warden::supervisor& sup, int count) {
    auto& p =
        sup.spawn_process({.argv = {"sh", "-c",
                                    "trap '' TERM; i=0; while [ $i -lt " + std::to_string(count) +
                                        " ]; do sleep 1000 & i=$((i+1)); done; echo ready; wait"}});
    p.wait_for_line_blocking("ready", 30s);
    return p;
}

} // namespace

TEST_CASE("a cancellation notes the processes below a process with at most 64 descriptors") {
    warden::supervisor sup{{.cancel_grace = 60s}};
    auto& p = tree_ignoring_sigterm(sup, 100);
    const auto before = warden_test::fd_count();
    sup.cancel(); // the SIGTERM to the group, which every member ignores
    CHECK(warden_test::fd_count() - before == warden::detail::noted_descendants::max_per_child);
    REQUIRE(::kill(-p.pid(), SIGKILL) == 0);
    sup.wait();
    CHECK(warden_test::fd_count() <= before); // the pipes are closed too
}

TEST_CASE("the descriptors noted below all processes stay within the program's budget") {
    rlimit files{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &files) == 0);
    const std::size_t budget =
        std::min<std::size_t>(256, files.rlim_cur == RLIM_INFINITY ? 256 : files.rlim_cur / 4);
    warden::supervisor sup{{.cancel_grace = 60s}};
    std::vector<pid_t> groups;
    for (int i = 0; i < 5; ++i)
        groups.push_back(tree_ignoring_sigterm(sup, 60).pid());
    const auto before = warden_test::fd_count();
    sup.cancel();
    CHECK(warden_test::fd_count() - before == budget);
    for (const pid_t group : groups)
        REQUIRE(::kill(-group, SIGKILL) == 0);
    sup.wait();
    CHECK(warden_test::fd_count() <= before);
}

TEST_CASE("a forked child's budget of noted descriptors is its own, not what the parent holds") {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    // The forked child runs a supervisor of its own, with threads, after a fork of a busy
    // multi-threaded parent. ThreadSanitizer cannot start a thread there ("starting new threads
    // after multi-threaded fork is not supported"). GCC 12's AddressSanitizer does not hold its
    // allocator's locks across fork(): one that a parent thread held at that moment stays held
    // in the child, whose next allocation of that size waits for good (seen once in a CI run
    // and reproduced: the child's I/O thread stuck in SizeClassAllocator64::GetFromAllocator).
    // The plain build runs it.
    MESSAGE("skipped under ThreadSanitizer and AddressSanitizer: a supervisor with threads in a "
            "forked child of a busy parent");
    return;
#endif
    warden::supervisor parent{{.cancel_grace = 60s}};
    std::vector<pid_t> groups;
    for (int i = 0; i < 5; ++i)
        groups.push_back(tree_ignoring_sigterm(parent, 60).pid());
    parent.cancel(); // the parent now holds the whole budget, and fork copies its count
    warden::supervisor host;
    host.spawn_forked([] {
        warden::supervisor sup{{.cancel_grace = 60s}};
        auto& p = tree_ignoring_sigterm(sup, 10);
        const auto before = warden_test::fd_count();
        sup.cancel();
        const auto noted = warden_test::fd_count() - before;
        ::kill(-p.pid(), SIGKILL);
        sup.wait();
        if (noted != 10)
            throw std::runtime_error("noted " + std::to_string(noted) + " of 10");
    });
    CHECK_NOTHROW(host.wait());
    for (const pid_t group : groups)
        REQUIRE(::kill(-group, SIGKILL) == 0);
    parent.wait();
}

TEST_CASE("processes the program started itself, and their orphans, are not warden's") {
    warden::supervisor sup;
    // Makes this program the subreaper before the orphan below is made.
    sup.spawn_process({.argv = {"true"}});
    sup.wait();

    // A child of the program's own, and an orphan of another, both children of this program.
    const pid_t own = spawn_sleep();
    const watched own_watch(own);
    FILE* in = ::popen("setsid sh -c 'echo $$; exec sleep 1000 >/dev/null' &", "r");
    REQUIRE(in != nullptr);
    char line[32] = {};
    REQUIRE(std::fgets(line, sizeof line, in) != nullptr);
    ::pclose(in);
    const pid_t orphan = std::stoi(line);
    const watched orphan_watch(orphan);

    // A warden process that leaves a descendant: its end looks through all of this program's
    // children.
    auto& p = sup.spawn_process({.argv = leaves_session(0)});
    const watched grandchild(grandchild_of(p));
    REQUIRE(::kill(p.pid(), SIGUSR1) == 0);
    sup.wait();
    CHECK(grandchild.gone());

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

// A descendant that its sweep killed, but that the scheduler had not yet run to its end when
// the sweep's budget ran out, is kept rather than left to become a zombie of the program
// (`warden_stress --kinds descendants` at nice 19 beside two busy loops: 12 and 18 zombies
// left in two sets of 150 runs before, none after).
TEST_CASE("a descendant killed but not ended in time is kept, and reaped once it ends") {
    const pid_t pid = spawn_sleep();
    const watched sleeper(pid);
    keep_as_killed(pid);
    // Still running: kept, not reaped, not waited for beyond the wait given.
    CHECK(warden::detail::reap_killed_descendants(0ms) >= 1);
    CHECK_FALSE(sleeper.ended());

    REQUIRE(::kill(pid, SIGKILL) == 0);
    warden::detail::reap_killed_descendants(30s);
    CHECK(sleeper.gone());
}

TEST_CASE("a supervisor's end reaps the killed descendants that had not ended") {
    const pid_t pid = spawn_sleep();
    const watched sleeper(pid);
    keep_as_killed(pid);
    REQUIRE(::kill(pid, SIGKILL) == 0);
    { warden::supervisor sup; }
    // Without the wait at the supervisor's end it would be a zombie of this program now.
    CHECK(sleeper.gone());
}
