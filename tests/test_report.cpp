#include <warden/report.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <doctest/doctest.h>

#include <unistd.h>

#include <warden/supervisor.hpp>

#include "json_check.hpp"
#include "log_sink.hpp"
#include "registry.hpp"

TEST_CASE("failure_report::to_string reads as a person wants it") {
    warden::supervisor sup{warden::supervisor_options{.name = "suite"}};
    const unsigned line = __LINE__ + 1;
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); },
              {.name = "installer"});
    CHECK_THROWS(sup.wait());
    auto text = sup.first_failure()->to_string();
    CHECK(text.starts_with("installer (thread) failed: install.sh: No such file or directory\n"));
    CHECK(text.find("exception type: std::runtime_error") != std::string::npos);
    CHECK(text.find("spawned at ") != std::string::npos);
    CHECK(text.find("test_report.cpp:" + std::to_string(line)) != std::string::npos);
    CHECK(text.find("in test \"failure_report::to_string reads as a person wants it\"") !=
          std::string::npos);
    CHECK(text.find("supervisor suite") != std::string::npos);
    // Where, test and stack come in that order.
    CHECK(text.find("spawned at") < text.find("in test"));
    CHECK(text.find("in test") < text.find("spawn stack:"));
}

TEST_CASE("report_for finds a report after its supervisor is gone") {
    try {
        warden::supervisor sup;
        sup.spawn([] { throw std::runtime_error("outlives"); });
        sup.wait();
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        REQUIRE(report != nullptr);
        CHECK(report->what == "outlives");
    }
    CHECK(warden::report_for(std::make_exception_ptr(std::runtime_error("stranger"))) == nullptr);
    CHECK(warden::report_for(nullptr) == nullptr);
}

TEST_CASE("report_for keeps the newest 1024 failures and drops the oldest") {
    warden::supervisor_options quiet{.policy = warden::policy::collect,
                                     .capture = warden::capture::location};
    std::vector<std::exception_ptr> errors;
    {
        warden::supervisor sup{quiet};
        for (int i = 0; i < 1100; ++i)
            sup.spawn([i] { throw std::runtime_error("failure " + std::to_string(i)); });
        try {
            sup.wait();
        } catch (const warden::failure_group& group) {
            for (const auto& report : group.reports())
                errors.push_back(report.error);
        }
    }
    REQUIRE(errors.size() == 1100);
    std::size_t found = 0;
    for (const auto& error : errors)
        if (const auto* report = warden::report_for(error)) {
            ++found;
            CHECK(report->error == error); // never another failure's report
        }
    CHECK(found == 1024);
}

TEST_CASE("the warden logger logs each failure report at error level") {
    {
        // The logger is created on first use.
        warden::supervisor sup;
        sup.spawn([] {});
        sup.wait();
    }
    auto logger = spdlog::get("warden");
    REQUIRE(logger != nullptr);
    auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
    logger->sinks().push_back(sink);
    {
        warden::supervisor sup;
        sup.spawn([] { throw std::runtime_error("logged failure"); }, {.name = "logged"});
        CHECK_THROWS(sup.wait());
    } // the failure is logged on the child's thread, after the waiter woke: joined here
    logger->sinks().pop_back();
    bool found = false;
    for (const auto& line : sink->last_formatted())
        found = found || line.find("logged (thread) failed: logged failure") != std::string::npos;
    CHECK(found);
}

// A failure's log line is handed to the symbolising thread off the waiters' path
// (src/supervisor.cpp, child_finished): wherever that hand-over is made, the line must come
// while a blocking wait goes on waiting for the other children, not at the supervisor's end.
TEST_CASE("a failure's log line is written while a blocking wait still waits for the others") {
    auto logger = warden_test::warden_logger();
    REQUIRE(logger != nullptr);
    std::promise<void> line;
    auto seen = line.get_future();
    std::once_flag once;
    logger->sinks().push_back(std::make_shared<warden_test::watching_sink>(
        "early failure", [&] { std::call_once(once, [&] { line.set_value(); }); }));
    std::atomic<bool> written{false};
    {
        warden::supervisor sup{{.policy = warden::policy::collect}};
        sup.spawn(
            [&] { written = seen.wait_for(std::chrono::seconds(30)) == std::future_status::ready; },
            {.name = "waits for the line"});
        sup.spawn([] { throw std::runtime_error("early failure"); }, {.name = "early"});
        CHECK_THROWS_AS(sup.wait(), warden::failure_group);
    }
    logger->sinks().pop_back();
    CHECK(written);
}

TEST_CASE("a failure nobody joined is logged with its report when the supervisor ends") {
    {
        warden::supervisor sup;
        sup.spawn([] {}).get();
    }
    auto logger = spdlog::get("warden");
    REQUIRE(logger != nullptr);
    auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
    logger->sinks().push_back(sink);
    {
        warden::supervisor sup{warden::supervisor_options{.name = "forgetful"}};
        auto t = sup.spawn([] { throw std::runtime_error("never joined"); });
        CHECK_THROWS(t.get()); // the task saw it; no join did
    }
    logger->sinks().pop_back();
    bool found = false;
    for (const auto& line : sink->last_formatted())
        found = found || (line.find("forgetful: failure nobody joined") != std::string::npos &&
                          line.find("failed: never joined") != std::string::npos);
    CHECK(found);
}

TEST_CASE("to_string(child_kind) names every kind") {
    CHECK(warden::to_string(warden::child_kind::coroutine) == "coroutine");
    CHECK(warden::to_string(warden::child_kind::thread) == "thread");
    CHECK(warden::to_string(warden::child_kind::process) == "process");
    CHECK(warden::to_string(warden::child_kind::forked) == "forked");
}

TEST_CASE("failure_report::to_json is valid JSON with every field") {
    warden::supervisor sup{warden::supervisor_options{.name = "suite"}};
    const unsigned line = __LINE__ + 1;
    sup.spawn([] { throw std::runtime_error("quote \" backslash \\ tab\t bell\a nul\x01"); },
              {.name = "naïve \xff child"});
    CHECK_THROWS(sup.wait());
    auto report = *sup.first_failure();
    report.suppressed = {"later \n one", "ünïcödé ✓"};
    report.stragglers = {"sleeper (thread) running for 2 s"};
    report.throw_stack = " 0# thrower() at a.cpp:1\n 1# caller() at a.cpp:2\n";
    const auto json = report.to_json();
    INFO(json);
    CHECK(warden_test::is_valid_json(json));
    CHECK(json.find(R"("what":"quote \" backslash \\ tab\t bell\u0007 nul\u0001")") !=
          std::string::npos);
    // Valid UTF-8 passes through; an invalid byte becomes U+FFFD.
    CHECK(json.find("\"child\":\"naïve \xef\xbf\xbd child\"") != std::string::npos);
    CHECK(json.find(R"("suppressed":["later \n one","ünïcödé ✓"])") != std::string::npos);
    CHECK(json.find(R"("stragglers":["sleeper (thread) running for 2 s"])") != std::string::npos);
    CHECK(json.find(R"("kind":"thread")") != std::string::npos);
    CHECK(json.find(R"("type":"std::runtime_error")") != std::string::npos);
    CHECK(json.find(R"("line":)" + std::to_string(line) + ",") != std::string::npos);
    CHECK(json.find(R"("supervisor":"suite")") != std::string::npos);
    CHECK(json.find(R"("when":"20)") != std::string::npos);
    CHECK(json.find(R"("stacktrace":")") != std::string::npos);
    CHECK(json.find(R"("outer":")") != std::string::npos);
    CHECK(json.find(R"("throw_stack":" 0# thrower() at a.cpp:1\n 1# caller() at a.cpp:2\n")") !=
          std::string::npos);
}

TEST_CASE("a report names where its program was started, as inside:, in text and JSON") {
    // As if this program had been started with WARDEN_ORIGIN set; put back afterwards.
    const std::string before = warden::detail::outer_origin();
    const std::string outer = "test \"service starts\" at tests/x.cpp:42, supervisor main, pid 7";
    warden::detail::set_outer_origin(outer);
    warden::supervisor sup{warden::supervisor_options{.name = "suite"}};
    sup.spawn([] { throw std::runtime_error("deep down"); }, {.name = "leaf"});
    CHECK_THROWS(sup.wait());
    warden::detail::set_outer_origin(before);
    const auto report = *sup.first_failure();
    CHECK(report.origin.outer == outer);
    const auto text = report.to_string();
    INFO(text);
    // After the origin's own lines, before the time.
    CHECK(text.find("  supervisor suite\n  inside: " + outer + "\n  failed at ") !=
          std::string::npos);
    const auto json = report.to_json();
    CHECK(warden_test::is_valid_json(json));
    CHECK(json.find(
              R"("outer":"test \"service starts\" at tests/x.cpp:42, supervisor main, pid 7")") !=
          std::string::npos);
}

TEST_CASE("a report without an outer origin has no inside: line") {
    warden::failure_report report;
    report.origin.supervisor = "suite";
    CHECK(report.to_string().find("inside:") == std::string::npos);
}

TEST_CASE("the WARDEN_ORIGIN value is one line, chains the outer origin, and is cut in its "
          "middle") {
    warden::origin o;
    o.test = "two\nlines";
    o.supervisor = "main";
    o.parent = "starter";
    o.outer = "at a.cpp:1, supervisor s, pid 1";
    const auto value = warden::detail::origin_value(o);
    CHECK(value.starts_with("test \"two lines\" at "));
    CHECK(value.find("test_report.cpp") == std::string::npos); // a default source_location
    CHECK(value.ends_with(", by child starter, supervisor main, pid " + std::to_string(::getpid()) +
                          " <- at a.cpp:1, supervisor s, pid 1"));

    // A long chain keeps its start (this spawn) and its end (the first), and whole characters.
    std::string chain;
    while (chain.size() < 3 * warden::detail::max_origin_value_size)
        chain += "é <- ";
    o.outer = chain + "test \"root\" at r.cpp:9, supervisor r, pid 2";
    const auto cut = warden::detail::origin_value(o);
    CHECK(cut.size() <= warden::detail::max_origin_value_size);
    CHECK(cut.size() >= warden::detail::max_origin_value_size - 8);
    CHECK(cut.starts_with("test \"two lines\" at "));
    CHECK(cut.ends_with("test \"root\" at r.cpp:9, supervisor r, pid 2"));
    const auto dots = cut.find("...");
    REQUIRE(dots != std::string::npos);
    for (std::size_t i = 0; i < cut.size(); ++i) {
        const auto byte = static_cast<unsigned char>(cut[i]);
        if (byte == 0xc3)
            CHECK((i + 1 < cut.size() && static_cast<unsigned char>(cut[i + 1]) == 0xa9));
        if (byte == 0xa9)
            CHECK((i > 0 && static_cast<unsigned char>(cut[i - 1]) == 0xc3));
    }
}
