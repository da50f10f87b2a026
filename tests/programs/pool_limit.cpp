// Starts a supervisor whose pool cannot be created in full: RLIMIT_NPROC leaves room for only
// a few of its threads. test_bad_input.cpp checks that the spawn fails with spawn_error and
// that the supervisor then waits and ends with nothing left.

#include <warden/supervisor.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <sys/resource.h>
#include <unistd.h>

namespace {

std::size_t task_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/task"))
        ++n;
    return n;
}

} // namespace

int main() {
    // The limit does not bind root (CAP_SYS_RESOURCE): run as nobody. Not root: nothing to do.
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) {
        std::perror("setuid(nobody)");
        return 2;
    }
    warden::supervisor sup{{.name = "limited", .threads = 16}};
    // The supervisor's I/O thread exists; room for three of the pool's sixteen.
    const rlim_t allowed = task_count() + 3;
    const rlimit limit{allowed, allowed};
    if (::setrlimit(RLIMIT_NPROC, &limit) != 0) {
        std::perror("setrlimit");
        return 2;
    }
    try {
        sup.spawn([] {});
        std::printf("spawn succeeded\n");
        return 1;
    } catch (const warden::spawn_error& e) {
        std::printf("spawn_error: %s: %s\n", e.argument().c_str(), e.what());
    }
    sup.wait();
    // A joined thread stays listed in /proc/self/task for a moment after pthread_join.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (task_count() + 3 != allowed && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    if (!sup.children().empty() || task_count() + 3 != allowed) {
        std::printf("something was left: %zu children, %zu threads\n", sup.children().size(),
                    task_count());
        return 1;
    }
    std::printf("wait returned, nothing left\n");
    return 0;
}
