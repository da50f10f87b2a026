// Installs the dump signal, raises SIGQUIT at itself while a child runs, then carries on.
// test_dump.cpp checks that the dump reached stderr and that the program exited 0.
//
// The dump is written by warden's thread some time after raise() returns; the program waits
// for it by reading its own stderr through a pipe up to the dump's last line, then copies it
// to the real stderr.

#include <warden/dump.hpp>
#include <warden/supervisor.hpp>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <latch>
#include <mutex>
#include <stop_token>
#include <string>

#include <poll.h>
#include <unistd.h>

int main() {
    warden::install_dump_signal();
    int captured[2];
    if (::pipe(captured) != 0) {
        std::perror("pipe");
        return 2;
    }
    const int real_stderr = ::dup(STDERR_FILENO);
    ::dup2(captured[1], STDERR_FILENO);
    ::close(captured[1]);

    warden::supervisor sup{{.name = "signalled"}};
    std::latch started(1);
    sup.spawn(
        [&](std::stop_token token) {
            started.count_down();
            std::mutex mutex;
            std::condition_variable_any stopped;
            std::unique_lock lock(mutex);
            stopped.wait(lock, token, [] { return false; });
        },
        {.name = "stuck child"});
    started.wait();
    std::raise(SIGQUIT);

    std::string text;
    char buffer[4096];
    while (text.find("warden: end of dump\n") == std::string::npos) {
        // A dump that never comes fails the test in 10 s instead of hanging it.
        pollfd ready{captured[0], POLLIN, 0};
        if (::poll(&ready, 1, 10'000) != 1)
            break;
        const ssize_t n = ::read(captured[0], buffer, sizeof buffer);
        if (n <= 0)
            break;
        text.append(buffer, static_cast<std::size_t>(n));
    }
    ::dup2(real_stderr, STDERR_FILENO);
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, text.data(), text.size());
    std::printf("still running\n");
    return 0;
}
