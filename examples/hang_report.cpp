// Three children that never end: a thread deadlocked on a mutex, a coroutine awaiting a
// timer that never fires, and a process blocked reading its stdin. One wait_for times out,
// and its join_timeout names all three and where each one is.
//
// Exits 0 after showing the report.

#include <warden/warden.hpp>

#include <chrono>
#include <cstdio>
#include <latch>
#include <mutex>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

std::mutex config_mutex;

[[gnu::noinline]] void reload_config() {
    // The main thread holds config_mutex: a deadlock.
    std::lock_guard lock(config_mutex);
}

asio::awaitable<void> wait_for_heartbeat() {
    asio::steady_timer never(co_await asio::this_coro::executor,
                             asio::steady_timer::time_point::max());
    co_await never.async_wait(asio::use_awaitable);
}

} // namespace

int main() {
    warden::supervisor sup({.name = "hang-report", .cancel_grace = 500ms});
    std::unique_lock held(config_mutex);
    sup.spawn(reload_config, {.name = "config reloader"});
    sup.spawn(wait_for_heartbeat, {.name = "heartbeat"});
    // A child process's stdin is /dev/null, where `read` ends at once: this one reads a pipe
    // from a writer that never writes.
    sup.spawn_process({.argv = {"sh", "-c", "sleep 3600 | { read line; echo \"$line\"; }"},
                       .name = "stdin reader"});
    try {
        sup.wait_for(1s);
    } catch (const warden::join_timeout& e) {
        std::printf("%s\n", e.what());
    }
    held.unlock();
    sup.cancel();
    return 0;
}
