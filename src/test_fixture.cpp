// The part of the test-framework fixtures that does not depend on the framework (see
// include/warden/detail/test_fixture.hpp for the order of a test's life). The leak check's
// design, what it excludes and why, is in docs/test-frameworks.md.

#include <warden/detail/test_fixture.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include <warden/dump.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include "body_outcome.hpp"
#include "json.hpp"
#include "leak_check.hpp"

namespace warden::detail {

namespace fs = std::filesystem;

namespace {

// Where failing tests' report files go: WARDEN_REPORT_DIR, else Bazel's
// TEST_UNDECLARED_OUTPUTS_DIR; empty for none. A test process's environment is fixed, so it
// is read once.
fs::path report_directory;

// What a test process needs once, before its first fixture test: every adapter's fixture
// comes through here at set-up.
void prepare_process() {
    static std::once_flag once;
    std::call_once(once, [] {
        // CTest's TIMEOUT_SIGNAL_NAME SIGQUIT then shows where every child is stuck before the
        // test is killed. A test binary that cannot have it still runs its tests.
        try {
            install_dump_signal(SIGQUIT);
        } catch (const std::system_error& e) {
            std::fprintf(stderr, "warden: no dump on SIGQUIT: %s\n", e.what());
        }
        for (const char* name : {"WARDEN_REPORT_DIR", "TEST_UNDECLARED_OUTPUTS_DIR"}) {
            const char* value = std::getenv(name);
            if (value != nullptr && *value != '\0') {
                report_directory = value;
                break;
            }
        }
    });
}

// A file name from a test name: what is not a portable file-name character becomes '_'.
std::string file_stem(const std::string& test) {
    std::string out = test.empty() ? std::string("unnamed") : test.substr(0, 120);
    std::replace_if(
        out.begin(), out.end(),
        [](char c) {
            return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '.' || c == '-' || c == '_');
        },
        '_');
    return out;
}

bool contains(const std::vector<pid_t>& ids, pid_t id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// A thread joined just before the check (the test's supervisor's, the test's own) can stay
// listed in /proc/self/task for a moment after pthread_join returns: the kernel wakes the
// joiner before it removes the thread. There is nothing to wait on for that, so the check
// reads again until the candidates are gone or this has passed.
constexpr auto thread_exit_settle = std::chrono::seconds(1);

} // namespace

struct test_scope::snapshot {
    std::vector<pid_t> processes = child_processes();
    std::vector<pid_t> threads = detail::threads();
};

test_scope::test_scope(const test_framework& framework)
    : framework_(framework) {
    prepare_process();
    test_ = current_test();
    before_ = std::make_unique<snapshot>();
}

test_scope::~test_scope() {
    check_leaks();
    write_report_file();
}

void test_scope::report_failure(const failure_report& report) {
    framework_.fail_at(report.origin.where.file_name(), report.origin.where.line(),
                       report.to_string());
    failures_.push_back(report);
    failed_ = true;
}

void test_scope::report_timeout(const join_timeout& timeout) {
    if (!timeout.running().empty())
        framework_.fail_at(timeout.running().front().origin.where.file_name(),
                           timeout.running().front().origin.where.line(), timeout.what());
    else
        framework_.fail(timeout.what());
    join_timeout_ = timeout.what();
    failed_ = true;
}

void test_scope::write_report_file_for(const failure_report& report) {
    failures_.push_back(report);
    failed_ = true;
    write_report_file();
}

void test_scope::check_leaks() {
    std::vector<leak> found;
    if (process_leaks != leak_policy::off)
        for (pid_t pid : child_processes())
            if (!contains(before_->processes, pid))
                found.push_back(inspect_process(pid));
    if (thread_leaks != leak_policy::off) {
        std::vector<pid_t> candidates;
        for (pid_t tid : threads())
            if (!contains(before_->threads, tid))
                candidates.push_back(tid);
        const auto deadline = std::chrono::steady_clock::now() + thread_exit_settle;
        for (;;) {
            std::erase_if(candidates,
                          [](pid_t tid) { return !thread_listed(tid) || is_kept_thread(tid); });
            if (candidates.empty() || std::chrono::steady_clock::now() >= deadline)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        for (pid_t tid : candidates) {
            auto thread = inspect_thread(tid);
            thread.stack = thread_stack(tid);
            found.push_back(std::move(thread));
        }
    }
    for (const auto& l : found) {
        const bool is_process = l.what == leak::kind::process;
        const auto policy = is_process ? process_leaks : thread_leaks;
        const auto text = fmt::format("warden: test \"{}\" left {} {}", test_,
                                      is_process ? "a child process it started outside warden:"
                                                 : "a thread running:",
                                      l.to_string());
        if (policy == leak_policy::fail) {
            framework_.fail(text);
            failed_ = true;
        } else {
            framework_.warn(text);
        }
        leaks_.push_back(l.to_json());
    }
}

void test_scope::write_report_file() const {
    if (!failed_ || report_directory.empty())
        return;
    std::vector<std::string> failures;
    for (const auto& r : failures_)
        failures.push_back(r.to_json());
    json_object file;
    file.field("test", test_)
        .field("pid", static_cast<long long>(::getpid()))
        .raw("failures", json_array(failures))
        .raw("leaks", json_array(leaks_));
    if (!join_timeout_.empty())
        file.field("join_timeout", join_timeout_);
    const std::string text = file.str() + "\n";

    std::error_code error;
    fs::create_directories(report_directory, error);
    // Unique per test run (a test repeated in one process, shards sharing a directory), and
    // written whole under another name first: a collector never reads half a file.
    const std::string stem = "warden-" + file_stem(test_) + "-" + std::to_string(::getpid());
    fs::path path;
    for (int n = 1;; ++n) {
        path = report_directory / (stem + (n == 1 ? "" : "-" + std::to_string(n)) + ".json");
        if (!fs::exists(path, error))
            break;
    }
    const fs::path partial = path.string() + ".partial";
    {
        std::ofstream out(partial, std::ios::binary);
        out << text;
        if (!out)
            return framework_.warn("warden: could not write the report file " + partial.string());
    }
    fs::rename(partial, path, error);
}

test_fixture::test_fixture(const test_framework& framework)
    : test_scope(framework)
    , sup(supervisor_options{.name = "test supervisor"})
    , uncaught_at_start_(std::uncaught_exceptions())
    , watchdog_([this](std::stop_token stop) { watch(stop); }) {}

test_fixture::~test_fixture() {
    finish();
}

void test_fixture::finish() noexcept {
    if (finished_)
        return;
    finished_ = true;
    watchdog_.request_stop();
    watchdog_.join();
    if (framework_.body_threw(uncaught_at_start_)) {
        // The framework reports the exception; if a child failed (the exception may be that
        // failure, thrown by a wait), say where that child was spawned.
        if (auto first = sup.first_failure())
            report_failure(*first);
        sup.cancel();
        return;
    }
    try {
        sup.wait_for(fixtures::join_deadline);
    } catch (const join_timeout& e) {
        report_timeout(e);
    } catch (const failure_group& e) {
        for (const auto& r : e.reports())
            report_failure(r);
    } catch (...) {
        if (const auto* r = report_for(std::current_exception()))
            report_failure(*r);
        else
            framework_.fail("warden: the supervisor's join threw an unknown exception");
    }
}

void test_fixture::run_body(std::function<boost::asio::awaitable<void>()> make_body) {
    namespace asio = boost::asio;
    auto executor = sup.get_executor();
    auto signal = std::make_shared<asio::cancellation_signal>();
    // A promise, not a latch on this stack: the handler may still be inside count_down()
    // when the waiter returns.
    std::promise<std::exception_ptr> finished;
    auto body_result = finished.get_future();
    asio::co_spawn(executor, make_body(),
                   asio::bind_cancellation_slot(signal->slot(), [finished = std::move(finished)](
                                                                    std::exception_ptr e) mutable {
                       finished.set_value(std::move(e));
                   }));
    std::exception_ptr body_error;
    {
        std::stop_callback on_failure(sup.stop_token(), [&] {
            asio::post(executor, [signal] { signal->emit(asio::cancellation_type::terminal); });
        });
        body_error = body_result.get();
    }
    if (!body_error)
        return;
    // Cancelled because a child failed: the child's failure is the test's, and the join
    // reports it at the spawn's line.
    if (is_cancellation(body_error) && sup.first_failure())
        return finish();
    // A child's failure thrown into the body by a join or a task it awaited.
    if (const auto* report = report_for(body_error))
        return report_failure(*report);
    std::rethrow_exception(body_error);
}

void test_fixture::watch(std::stop_token stop) {
    std::mutex mutex;
    std::condition_variable_any changed;
    bool stopped = false;
    std::stop_callback on_stop(sup.stop_token(), [&] {
        {
            std::lock_guard lock(mutex);
            stopped = true;
        }
        changed.notify_all();
    });
    std::unique_lock lock(mutex);
    if (!changed.wait(lock, stop, [&] { return stopped; }))
        return; // the body finished first
    // The supervisor failed or was cancelled: the body has unobserved_grace to notice.
    changed.wait_for(lock, stop, fixtures::unobserved_grace, [] { return false; });
    if (stop.stop_requested() || sup.failure_observed())
        return;
    auto first = sup.first_failure();
    if (!first)
        return;
    std::fprintf(stderr,
                 "\nwarden: a child failed in test \"%s\" and the test body did not observe "
                 "it within %lld ms (it is blocked where warden cannot interrupt it); "
                 "ending the test binary.\n%s\n",
                 first->origin.test.c_str(),
                 static_cast<long long>(fixtures::unobserved_grace.count()),
                 first->to_string().c_str());
    std::fflush(stderr);
    write_report_file_for(*first);
    sup.cancel(); // SIGTERM to subprocesses before this process goes
    std::_Exit(fixtures::unobserved_exit_code);
}

} // namespace warden::detail
