// A join waiting on an io_context is woken from another thread through its bell (an eventfd
// its executor waits on) rather than a post (src/join_bell.hpp says why).

#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <doctest/doctest.h>

#include <warden/supervisor.hpp>

#include "helpers.hpp"
#include "join_bell.hpp"

namespace asio = boost::asio;
using warden::detail::join_bell;

TEST_CASE("join bell: a ring from another thread runs the armed function on the executor") {
    asio::io_context io(1);
    auto bell = join_bell::make(io.get_executor());
    REQUIRE(bell != nullptr);
    std::thread::id ran_on;
    bell->arm([&] { ran_on = std::this_thread::get_id(); });
    std::thread ringer([ringer = bell->ringer()] { CHECK(join_bell::ring(ringer)); });
    ringer.join();
    // The rung descriptor is ready: one handler runs, and nothing is left to wait for.
    CHECK(io.run() == 1);
    CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("join bell: a ring that came before the wait was armed wakes no later wait") {
    asio::io_context io(1);
    auto bell = join_bell::make(io.get_executor());
    REQUIRE(bell != nullptr);
    int rings_seen = 0;
    bell->arm([&] { ++rings_seen; });
    CHECK(join_bell::ring(bell->ringer()));
    CHECK(join_bell::ring(bell->ringer())); // both before the handler runs: one wake
    io.run();
    io.restart();
    CHECK(rings_seen == 1);
    // Armed again: the count was reset by the wake, so this wait waits for a ring of its own.
    bell->arm([&] { ++rings_seen; });
    CHECK(io.poll() == 0);
    CHECK(rings_seen == 1);
    CHECK(join_bell::ring(bell->ringer()));
    io.run_one();
    CHECK(rings_seen == 2);
}

TEST_CASE("join bell: a disarmed wait does not run its function") {
    asio::io_context io(1);
    auto bell = join_bell::make(io.get_executor());
    REQUIRE(bell != nullptr);
    bool ran = false;
    bell->arm([&] { ran = true; });
    bell->disarm();
    CHECK(join_bell::ring(bell->ringer()));
    io.run(); // the cancelled wait's handler, and nothing else
    CHECK_FALSE(ran);
}

TEST_CASE("join bell: a ring after the join ended touches no descriptor, and none is left open") {
    const auto before = warden_test::fd_count();
    std::weak_ptr<join_bell::descriptor> ringer;
    {
        asio::io_context io(1);
        auto bell = join_bell::make(io.get_executor());
        REQUIRE(bell != nullptr);
        ringer = bell->ringer();
        bell->arm([] {});
        CHECK(warden_test::fd_count() > before);
        bell.reset();
        io.run(); // the cancelled wait's handler held the descriptor
    }
    CHECK_FALSE(join_bell::ring(ringer));
    CHECK(warden_test::fd_count() == before);
}

TEST_CASE("join bell: none for an executor that is not an io_context's") {
    asio::thread_pool pool(1);
    CHECK(join_bell::make(pool.get_executor()) == nullptr);
    asio::io_context io(1);
    CHECK(join_bell::make(asio::make_strand(io)) != nullptr);
}

namespace {

// A thread child fails while a coroutine on `executor` awaits join; true if the join threw it.
bool join_woken_by_thread_child(asio::io_context& io, const asio::any_io_executor& executor) {
    bool failed = false;
    warden::supervisor sup{executor, {.threads = 1, .capture = warden::capture::location}};
    std::atomic<bool> go{false};
    sup.spawn([&go] {
        go.wait(false);
        throw std::runtime_error("thread child failed");
    });
    asio::co_spawn(
        executor,
        [&]() -> asio::awaitable<void> {
            try {
                co_await sup.join();
            } catch (const std::runtime_error&) {
                failed = true;
            }
        },
        asio::detached);
    // After the join's first turn, in which it suspends with its bell armed.
    asio::post(executor, [&go] {
        go.store(true);
        go.notify_one();
    });
    io.run();
    return failed;
}

} // namespace

TEST_CASE("join bell: a thread child's failure wakes join on the caller's io_context and on a "
          "strand of it, and leaves no descriptor open") {
    {
        // What a process opens once, at its first supervisor or failure, is not counted.
        asio::io_context io(1);
        CHECK(join_woken_by_thread_child(io, io.get_executor()));
    }
    for (const bool on_strand : {false, true}) {
        CAPTURE(on_strand);
        const auto before = warden_test::fd_count();
        {
            asio::io_context io(1);
            asio::any_io_executor executor = io.get_executor();
            if (on_strand)
                executor = asio::make_strand(io);
            CHECK(join_woken_by_thread_child(io, executor));
        }
        CHECK(warden_test::fd_count() == before);
    }
}
