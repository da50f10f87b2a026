// Figure: heap per live coroutine child, 100k children suspended, against raw co_spawn.
// Target: <= 1.5x.
//
// Both sides run the same child body (count itself started, then wait on its own timer that
// never expires) on an io_context run by this thread; warden's supervisor is
// `supervisor{io.get_executor(), {.capture = ...}}`, given the child the way the raw side
// gives it to co_spawn: the awaitable `suspended_child(started)`. Given as a lambda that makes
// it instead, warden keeps the lambda for the child's lifetime (its captures may be referred
// to by the coroutine): an info row. Heap in use is glibc's mallinfo2()
// (uordblks + hblkhd: bytes handed out, including malloc's per-chunk overhead, which is
// real memory), taken before the spawns and once every child is suspended. The task
// handles are dropped, as a fire-and-join caller does. Warden and raw alternate, after a
// warm-up of each, and the median per child is reported.
//
// One timer per child, not one shared timer: Asio cancels a single wait on a timer by searching
// that timer's list of waits, so cancelling 100k waits on one timer one by one (what warden's
// per-child cancellation does) is quadratic. Teardown: warden cancels its children; the raw
// side destroys its io_context, which destroys the suspended frames.

#include <malloc.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <warden/supervisor.hpp>

#include "common.hpp"

namespace asio = boost::asio;
using namespace warden_bench;

namespace {

std::size_t heap_in_use() {
    const auto info = mallinfo2();
    return info.uordblks + info.hblkhd;
}

asio::awaitable<void> suspended_child(std::size_t& started) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer never(executor, asio::steady_timer::time_point::max());
    ++started;
    co_await never.async_wait(asio::use_awaitable);
}

// Runs handlers until `started` reaches n; returns the heap growth per child.
double settle(asio::io_context& io, const std::size_t& started, std::size_t n, std::size_t before) {
    while (started < n)
        io.poll();
    return static_cast<double>(heap_in_use() - before) / static_cast<double>(n);
}

// `cancellable`: each child's handler bound to a cancellation slot of its own, what Asio needs
// to cancel one child (info row: the part of warden's figure that is Asio's).
double raw_co_spawn(std::size_t n, bool cancellable = false) {
    std::size_t started = 0;
    std::size_t ended = 0;
    auto io = std::make_unique<asio::io_context>();
    // The timer service and its reactor exist before the first measurement.
    asio::steady_timer warm(*io);
    const auto before = heap_in_use();
    std::vector<asio::cancellation_signal> signals(cancellable ? n : 0);
    for (std::size_t i = 0; i < n; ++i) {
        auto on_end = [&ended](std::exception_ptr) { ++ended; };
        if (cancellable)
            asio::co_spawn(*io, suspended_child(started),
                           asio::bind_cancellation_slot(signals[i].slot(), on_end));
        else
            asio::co_spawn(*io, suspended_child(started), on_end);
    }
    const double per_child = settle(*io, started, n, before);
    io.reset();
    if (ended != 0)
        std::abort();
    return per_child;
}

enum class child_form { awaitable, lambda };

double warden_supervisor(std::size_t n, warden::capture capture,
                         child_form form = child_form::awaitable) {
    asio::io_context io;
    asio::steady_timer warm(io);
    std::size_t started = 0;
    double per_child = 0;
    {
        const auto before = heap_in_use();
        warden::supervisor sup{io.get_executor(), {.capture = capture}};
        for (std::size_t i = 0; i < n; ++i) {
            if (form == child_form::awaitable)
                sup.spawn(suspended_child(started));
            else
                sup.spawn([&started] { return suspended_child(started); });
        }
        per_child = settle(io, started, n, before);
        sup.cancel();
        io.run();
    }
    return per_child;
}

double median(std::vector<double> v) {
    return percentile(std::move(v), 50);
}

} // namespace

int main(int argc, char** argv) {
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t n = smoke ? 10'000 : 100'000;
    const int repetitions = smoke ? 1 : 5;
    // Warm-up: the logger, asio's per-thread caches, malloc's arenas.
    raw_co_spawn(1000);
    warden_supervisor(1000, warden::capture::location);
    warden_supervisor(1000, warden::capture::stacktrace);

    std::vector<double> raw, location, stacktrace, lambda, cancellable;
    for (int i = 0; i < repetitions; ++i) {
        raw.push_back(raw_co_spawn(n));
        cancellable.push_back(raw_co_spawn(n, true));
        location.push_back(warden_supervisor(n, warden::capture::location));
        stacktrace.push_back(warden_supervisor(n, warden::capture::stacktrace));
        lambda.push_back(warden_supervisor(n, warden::capture::location, child_form::lambda));
    }
    const std::string note =
        fmt::format("{} suspended children; mallinfo2 in-use bytes; median of {}", n, repetitions);
    const double r = median(raw);
    const double l = median(location);
    emit({"memory per suspended coroutine child, capture::location", l, r, "B", "<= 1.5x",
          check(l <= 1.5 * r), note});
    emit({"memory per suspended coroutine child, capture::stacktrace (info)", median(stacktrace), r,
          "B", "-", verdict::info, note});
    emit({"memory per suspended coroutine child, given as a capturing lambda (info)",
          median(lambda), r, "B", "-", verdict::info, note});
    emit({"memory per suspended coroutine child: raw co_spawn, a cancellation slot each (info)",
          median(cancellable), r, "B", "-", verdict::info, note});
    return 0;
}
