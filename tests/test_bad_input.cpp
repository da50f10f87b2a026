// The rows of docs/bad-input.md that are not about subprocesses (those are in
// test_process.cpp). Each test is named after its row.

#include <warden/supervisor.hpp>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <doctest/doctest.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Calls `on_match` for each log message containing `needle`.
class watching_sink final : public spdlog::sinks::base_sink<std::mutex> {
  public:
    watching_sink(std::string needle, std::function<void()> on_match)
        : needle_(std::move(needle))
        , on_match_(std::move(on_match)) {}

  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        if (std::string_view(msg.payload.data(), msg.payload.size()).find(needle_) !=
            std::string_view::npos)
            on_match_();
    }
    void flush_() override {}

  private:
    std::string needle_;
    std::function<void()> on_match_;
};

struct throwing_cleanup {
    ~throwing_cleanup() noexcept(false) { throw std::runtime_error("cleanup failed"); }
};

} // namespace

TEST_CASE("bad input: spawn after cancel throws supervisor_closed and runs nothing") {
    warden::supervisor sup;
    sup.cancel();
    bool ran = false;
    CHECK_THROWS_AS(sup.spawn([&] { ran = true; }), warden::supervisor_closed);
    CHECK_THROWS_AS(sup.spawn([&]() -> asio::awaitable<void> {
        ran = true;
        co_return;
    }),
                    warden::supervisor_closed);
    sup.wait();
    CHECK_FALSE(ran);
}

TEST_CASE("bad input: join twice returns the second time") {
    warden::supervisor sup;
    sup.spawn([] { throw std::runtime_error("x"); });
    CHECK_THROWS_AS(sup.wait(), std::runtime_error);
    CHECK_NOTHROW(sup.wait());
    CHECK_NOTHROW(sup.wait_for(1s));
}

TEST_CASE("bad input: join from inside a child of the same supervisor fails that child") {
    warden::supervisor sup;
    sup.spawn([&] { sup.wait_for(1h); }, {.name = "impatient"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const std::logic_error& e) {
        CHECK(std::string(e.what()).find("inside child impatient") != std::string::npos);
    }
}

TEST_CASE("bad input: a non-std exception with a throwing what() is described by its type") {
    struct odd {
        const char* what() const { throw 1; }
    };
    warden::supervisor sup;
    sup.spawn([] { throw odd{}; });
    CHECK_THROWS_AS(sup.wait(), odd);
    CHECK(sup.first_failure()->what.find("odd") != std::string::npos);
}

TEST_CASE("bad input: an exception thrown from a destructor during cancellation is kept") {
    warden::supervisor sup{warden::supervisor_options{.threads = 2}};
    std::latch cleaner_running(1);
    sup.spawn(
        [&](std::stop_token token) {
            throwing_cleanup guard;
            cleaner_running.count_down();
            while (!token.stop_requested())
                std::this_thread::yield();
        },
        {.name = "cleaner"});
    sup.spawn(
        [&] {
            cleaner_running.wait();
            throw std::runtime_error("first");
        },
        {.name = "first"});
    try {
        sup.wait_for(30s);
        FAIL("no throw");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "first");
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        REQUIRE(report->suppressed.size() == 1);
        CHECK(report->suppressed[0] == "cleaner (thread) failed: cleanup failed");
    }
}

TEST_CASE("bad input: 10k children failing at the same instant give one first failure") {
    constexpr int count = 10'000;
    // Ten thousand error lines would only slow the storm down (most of all under sanitizers).
    warden::supervisor{}.spawn([] {}).get();
    auto logger = spdlog::get("warden");
    const auto level = logger->level();
    logger->set_level(spdlog::level::off);
    // Grace long enough for every child to throw, however slow the build.
    warden::supervisor sup{
        warden::supervisor_options{.capture = warden::capture::location, .cancel_grace = 120s}};
    auto gate = std::make_shared<asio::steady_timer>(sup.get_executor(), 1h);
    std::atomic<int> thrown{0};
    std::latch waiting(count);
    for (int i = 0; i < count; ++i)
        sup.spawn([&, gate]() -> asio::awaitable<void> {
            waiting.count_down();
            // Not cancellable: every child throws once the gate opens.
            co_await asio::this_coro::throw_if_cancelled(false);
            co_await gate->async_wait(asio::bind_cancellation_slot(
                asio::cancellation_slot(), asio::as_tuple(asio::use_awaitable)));
            ++thrown;
            throw std::runtime_error("storm");
        });
    waiting.wait();
    asio::post(sup.get_executor(), [gate] { gate->cancel(); });
    try {
        sup.wait_for(120s);
        FAIL("no throw");
    } catch (const std::runtime_error&) {
        auto all = sup.failures();
        CHECK(thrown.load() == count);
        CHECK(all.size() == static_cast<std::size_t>(count));
        CHECK(all.front().error == std::current_exception());
        std::set<std::string> names;
        for (const auto& f : all)
            names.insert(f.child);
        CHECK(names.size() == static_cast<std::size_t>(count)); // each exactly once
        CHECK(warden::report_for(std::current_exception())->suppressed.size() ==
              static_cast<std::size_t>(count - 1));
    }
    logger->set_level(level);
}

TEST_CASE("bad input: a child that never honours cancellation is waited for and logged") {
    std::latch release(1);
    auto logger = spdlog::get("warden");
    if (!logger) {
        warden::supervisor{}.spawn([] {}).get();
        logger = spdlog::get("warden");
    }
    REQUIRE(logger != nullptr);
    // The destructor's warning is what lets the straggler go: it must come while the
    // destructor is still waiting.
    auto sink = std::make_shared<watching_sink>("ignore cancellation: stubborn",
                                                [&] { release.count_down(); });
    logger->sinks().push_back(sink);
    std::atomic<bool> finished{false};
    {
        warden::supervisor sup{warden::supervisor_options{.cancel_grace = 20ms}};
        std::latch started(1);
        sup.spawn(
            [&] {
                started.count_down();
                release.wait(); // ignores its stop token
                finished = true;
            },
            {.name = "stubborn"});
        started.wait();
    }
    logger->sinks().pop_back();
    CHECK(finished);
}
