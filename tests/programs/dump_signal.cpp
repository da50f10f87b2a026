// Installs the dump signal, raises SIGQUIT at itself while a child runs, then carries on.
// test_dump.cpp checks that the dump reached stderr and that the program exited 0.
//
// The dump is written by warden's thread some time after raise() returns; the program waits
// for it by reading its own stderr up to the dump's last line (captured_stderr.hpp), then
// copies it to the real stderr.

#include <warden/dump.hpp>
#include <warden/supervisor.hpp>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <latch>
#include <mutex>
#include <stop_token>
#include <string>

#include <unistd.h>

#include "captured_stderr.hpp"

int main() {
    warden::install_dump_signal();
    warden_test::captured_stderr captured;

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

    const auto text = captured.read_dump();
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, text.data(), text.size());
    std::printf("still running\n");
    return 0;
}
