// Randomized fault-injection stress for warden: seeded and reproducible.
//
//   warden_stress --seed 1 --runs 100000 [--kinds coroutine,thread,process,forked,descendants]
//                 [--verbose]
//
// Each run builds a random tree of children under one supervisor (fail_fast). Every child
// waits for its "moment"; the run releases the moments one by one, in plan order, and
// each child then succeeds, throws (a std or a non-std type), or, for processes, exits
// non-zero, dies by a signal, or prints a sanitizer report in pieces and exits 0 (a failure
// too, whose what() must lead with the report's summary). Some children honour
// cancellation, some ignore it until their moment, some only ever end by cancellation.
// Children in the same moment act concurrently. After the last moment the run joins and checks
// against what happened:
//   - join throws exactly the first failure in time order (the one failing child of the
//     first failing moment, or one of them when that moment had several), or nothing;
//   - every child that failed is in failures() exactly once, and nothing else is;
//   - nothing is still running after join;
//   - no thread, file descriptor or child process is left once the supervisor is gone.
// Every fourth run is a nested run instead (nested_run below): supervisors inside children,
// with extreme durations and a pool that cannot be created. Every eighth normal run has a
// thread that dumps every supervisor (warden::dump_all) all through it.
// With the kind `descendants`, every other run (every run, when it is the only kind) is a
// descendants run instead (descendants_run below): processes that leave descendants in new
// sessions, whose ends race with the supervisor's destruction.
// It prints the number of runs and of violations; it exits 1 on any violation.

#include <warden/warden.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "../helpers.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

enum class kind { coroutine, thread, process, forked };
enum class action {
    succeed,
    throw_std,
    throw_int,
    exit_nonzero,
    die_by_signal,
    until_cancelled,
    sanitizer_report, // processes: a report, then exit 0
};

// What a sanitizer_report child prints, cut in the middle of its first line, and the summary
// its failure must start with.
constexpr const char* report_first_piece = "==1==ERROR: Address";
constexpr const char* report_second_piece =
    "Sanitizer: heap-use-after-free on address 0x1\n    #0 0x1 in f x.cpp:1\n";
constexpr std::string_view report_summary = "AddressSanitizer: heap-use-after-free in f at x.cpp:1";
enum class on_cancel { honour, ignore };

struct planned_child {
    int id = 0;
    kind k = kind::thread;
    action what = action::succeed;
    on_cancel cancel = on_cancel::honour;
    int moment = 0;  // when it acts; unused for until_cancelled
    int parent = -1; // spawned by this child, at its start
};

std::string child_name(int id) {
    return "c" + std::to_string(id);
}

// Releases moments to waiting children: blocking waits, and coroutine waits through a
// timer that the release cancels.
class moment_gate {
  public:
    void release(int moment) {
        std::vector<std::function<void()>> wakers;
        {
            std::lock_guard lock(mutex_);
            released_ = moment;
            wakers.swap(wakers_);
        }
        changed_.notify_all();
        for (auto& w : wakers)
            w();
    }

    // True when the moment came; false when stopped first (and `honour`).
    bool wait(int moment, std::stop_token stop, bool honour) {
        std::unique_lock lock(mutex_);
        if (honour)
            return changed_.wait(lock, stop, [&] { return released_ >= moment; });
        changed_.wait(lock, [&] { return released_ >= moment; });
        return true;
    }

    // Throws operation_aborted when cancelled first and `honour`.
    asio::awaitable<void> async_wait(int moment, bool honour) {
        auto executor = co_await asio::this_coro::executor;
        for (;;) {
            auto timer = std::make_shared<asio::steady_timer>(executor, 1h);
            {
                std::lock_guard lock(mutex_);
                if (released_ >= moment)
                    co_return;
                // Weak: the gate outlives the supervisor and its io_context.
                wakers_.push_back([weak = std::weak_ptr(timer), executor] {
                    asio::post(executor, [weak] {
                        if (auto t = weak.lock())
                            t->cancel();
                    });
                });
            }
            if (honour) {
                // The release cancels the timer too: only the coroutine's own cancellation
                // state says whether it was cancelled.
                co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
                auto state = co_await asio::this_coro::cancellation_state;
                if (state.cancelled() != asio::cancellation_type::none)
                    throw boost::system::system_error(asio::error::operation_aborted);
            } else {
                // Detached from the coroutine's cancellation: ignores it.
                co_await asio::this_coro::throw_if_cancelled(false);
                co_await timer->async_wait(asio::bind_cancellation_slot(
                    asio::cancellation_slot(), asio::as_tuple(asio::use_awaitable)));
            }
        }
    }

  private:
    std::mutex mutex_;
    std::condition_variable_any changed_;
    int released_ = -1;
    std::vector<std::function<void()>> wakers_;
};

struct run_result {
    bool ok = true;
    std::string violation;
};

// WNOWAIT: a zombie found here stays for describe_children() to name.
bool has_child_processes() {
    siginfo_t info{};
    return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

// This process's children, from /proc (each thread lists the ones it started).
std::vector<pid_t> own_children() {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream in(task.path() / "children");
        pid_t pid;
        while (in >> pid)
            out.push_back(pid);
    }
    return out;
}

// After a violation: the children left are killed and reaped, so that the next run starts
// clean and reports only its own.
void end_children_left() {
    for (const pid_t pid : own_children())
        ::kill(pid, SIGKILL);
    while (::waitpid(-1, nullptr, 0) > 0) {
    }
}

// This process's children as "pid (state) command", for a violation's text.
std::string describe_children() {
    std::string out;
    for (const pid_t pid : own_children()) {
        const auto dir = "/proc/" + std::to_string(pid);
        std::ifstream stat_file(dir + "/stat");
        std::string stat((std::istreambuf_iterator<char>(stat_file)), {});
        std::ifstream cmd_file(dir + "/cmdline");
        std::string cmd((std::istreambuf_iterator<char>(cmd_file)), {});
        std::replace(cmd.begin(), cmd.end(), '\0', ' ');
        out += " [" + stat.substr(0, stat.find(' ', stat.rfind(')') + 2)) + "] " + cmd;
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == pid)
            out += info.si_code == CLD_EXITED
                       ? " exited " + std::to_string(info.si_status)
                       : " killed by signal " + std::to_string(info.si_status);
    }
    return out;
}

class stress_run {
  public:
    stress_run(std::mt19937_64& rng, const std::vector<kind>& kinds,
               const std::filesystem::path& dir)
        : rng_(rng)
        , kinds_(kinds)
        , dir_(dir) {}

    run_result execute();

  private:
    std::vector<planned_child> make_plan();
    void spawn_child(warden::supervisor& sup, const planned_child& c);
    void act(const planned_child& c); // thread and coroutine children, at their moment
    void note_failure(int id) {
        std::lock_guard lock(mutex_);
        failed_.insert(child_name(id));
    }
    std::string describe_plan() const {
        static const char* kinds[] = {"coroutine", "thread", "process", "forked"};
        static const char* actions[] = {"succeed",         "throw_std",     "throw_int",
                                        "exit_nonzero",    "die_by_signal", "until_cancelled",
                                        "sanitizer_report"};
        std::string out = "\n  plan (" + std::to_string(moments_) + " moments):";
        for (const auto& c : plan_)
            out += "\n    " + child_name(c.id) + " " + kinds[static_cast<int>(c.k)] + " " +
                   actions[static_cast<int>(c.what)] + " moment " + std::to_string(c.moment) +
                   (c.cancel == on_cancel::ignore ? " ignores-cancel" : "") +
                   (c.parent >= 0 ? " parent " + child_name(c.parent) : "");
        return out;
    }
    std::string fifo_for(int moment) { return (dir_ / ("m" + std::to_string(moment))).string(); }

    std::mt19937_64& rng_;
    const std::vector<kind>& kinds_;
    std::filesystem::path dir_;
    std::vector<planned_child> plan_;
    moment_gate gate_;
    std::mutex mutex_;
    std::set<std::string> failed_;   // children that failed: thrown, or a process that acted
    std::set<std::string> may_fail_; // processes that fail unless a sibling's failure is first
    std::atomic<int> admitted_{0};
    int moments_ = 0;
};

std::vector<planned_child> stress_run::make_plan() {
    std::uniform_int_distribution<int> n_children(1, 8);
    std::uniform_int_distribution<int> percent(0, 99);
    const int n = n_children(rng_);
    moments_ = std::uniform_int_distribution<int>(1, n)(rng_);
    std::vector<planned_child> plan;
    for (int i = 0; i < n; ++i) {
        planned_child c;
        c.id = i;
        c.k = kinds_[std::uniform_int_distribution<std::size_t>(0, kinds_.size() - 1)(rng_)];
        const bool is_process = c.k == kind::process || c.k == kind::forked;
        const int p = percent(rng_);
        if (p < 35)
            c.what = action::succeed;
        else if (p < 55)
            c.what = is_process ? action::exit_nonzero : action::throw_std;
        else if (p < 70)
            c.what = is_process ? action::die_by_signal : action::throw_int;
        else if (p < 85)
            c.what = action::until_cancelled;
        else if (p < 93)
            c.what = is_process ? action::exit_nonzero : action::throw_std;
        else
            c.what = is_process ? action::sanitizer_report : action::throw_std;
        // Processes honour SIGTERM; their "ignore" is tested in test_process.cpp.
        c.cancel = !is_process && percent(rng_) < 30 ? on_cancel::ignore : on_cancel::honour;
        if (c.what == action::until_cancelled)
            c.cancel = on_cancel::honour;
        c.moment = std::uniform_int_distribution<int>(0, moments_ - 1)(rng_);
        // Nested spawns come from thread or coroutine children that outlive moment 0.
        if (i > 0 && percent(rng_) < 25) {
            int parent = std::uniform_int_distribution<int>(0, i - 1)(rng_);
            if (plan[parent].parent == -1 &&
                (plan[parent].k == kind::thread || plan[parent].k == kind::coroutine))
                c.parent = parent;
        }
        plan.push_back(c);
    }
    return plan;
}

void stress_run::act(const planned_child& c) {
    switch (c.what) {
    case action::throw_std:
        note_failure(c.id);
        throw std::runtime_error(child_name(c.id));
    case action::throw_int:
        note_failure(c.id);
        throw c.id;
    default:
        return;
    }
}

void stress_run::spawn_child(warden::supervisor& sup, const planned_child& c) {
    auto spawn_nested = [this, &sup, id = c.id] {
        for (const auto& sub : plan_)
            if (sub.parent == id)
                spawn_child(sup, sub);
    };
    const warden::spawn_options options{.name = child_name(c.id)};
    switch (c.k) {
    case kind::thread:
        sup.spawn(
            [this, c, spawn_nested](std::stop_token stop) {
                spawn_nested();
                ++admitted_;
                if (c.what == action::until_cancelled) {
                    gate_.wait(1 << 30, stop, true);
                    return;
                }
                if (gate_.wait(c.moment, stop, c.cancel == on_cancel::honour))
                    act(c);
            },
            options);
        break;
    case kind::coroutine:
        sup.spawn(
            [this, c, spawn_nested]() -> asio::awaitable<void> {
                spawn_nested();
                ++admitted_;
                if (c.what == action::until_cancelled) {
                    co_await gate_.async_wait(1 << 30, true);
                    co_return;
                }
                co_await gate_.async_wait(c.moment, c.cancel == on_cancel::honour);
                act(c);
            },
            options);
        break;
    case kind::process: {
        std::string script = "read x < " + fifo_for(c.moment) + "; ";
        if (c.what == action::exit_nonzero)
            script += "exit 3";
        else if (c.what == action::die_by_signal)
            script += "kill -SEGV $$";
        else if (c.what == action::until_cancelled)
            script = "exec sleep 1000";
        else if (c.what == action::sanitizer_report)
            script += std::string("printf '") + report_first_piece + "'; printf '" +
                      report_second_piece + "'; exit 0";
        else
            script += "exit 0";
        sup.spawn_process({.argv = {"sh", "-c", script}, .name = child_name(c.id)});
        ++admitted_;
        break;
    }
    case kind::forked: {
        auto fifo = fifo_for(c.moment);
        sup.spawn_forked(
            [fifo, c] {
                if (c.what == action::until_cancelled) {
                    ::pause();
                    return;
                }
                int fd = ::open(fifo.c_str(), O_RDONLY);
                char byte;
                [[maybe_unused]] auto n = ::read(fd, &byte, 1);
                ::close(fd);
                if (c.what == action::exit_nonzero)
                    throw std::runtime_error("forked " + std::to_string(c.id));
                if (c.what == action::die_by_signal)
                    ::raise(SIGSEGV);
                if (c.what == action::sanitizer_report) {
                    std::fputs(report_first_piece, stderr);
                    std::fputs(report_second_piece, stderr);
                }
            },
            options);
        ++admitted_;
        break;
    }
    }
}

run_result stress_run::execute() {
    plan_ = make_plan();
    // Held open read-write from here to the end of the run: a child's open() of its FIFO
    // never blocks and the release never finds "no reader yet" (ENXIO); the release writes
    // one line per reader.
    std::vector<int> fifo_fds;
    for (int m = 0; m < moments_; ++m) {
        ::mkfifo(fifo_for(m).c_str(), 0600);
        fifo_fds.push_back(::open(fifo_for(m).c_str(), O_RDWR | O_CLOEXEC));
    }
    int first_failing_moment = -1;
    std::set<std::string> first_moment_failures;
    run_result result;
    auto fail = [&](std::string why) {
        if (result.ok) {
            result.ok = false;
            result.violation = std::move(why);
        }
    };
    // "No limit" must behave as a long grace does: every child here ends by itself or when
    // cancelled.
    const auto grace = std::uniform_int_distribution<int>(0, 1)(rng_) == 0
                           ? 5000ms
                           : std::chrono::milliseconds::max();
    // Every eighth run dumps every supervisor over and over while it runs, is cancelled and
    // is destroyed: a dump reads live threads' stacks and coroutines' frames, and must never
    // crash, hang or change an outcome.
    std::jthread dumper;
    if (std::uniform_int_distribution<int>(0, 7)(rng_) == 0)
        dumper = std::jthread([](std::stop_token stop) {
            while (!stop.stop_requested()) {
                [[maybe_unused]] const auto text = warden::dump_all();
                std::this_thread::sleep_for(1ms);
            }
        });
    {
        warden::supervisor sup{warden::supervisor_options{
            .threads = 16, .capture = warden::capture::location, .cancel_grace = grace}};
        for (const auto& c : plan_)
            if (c.parent == -1)
                spawn_child(sup, c);
        // Every child (nested ones too) is admitted before the first moment. The pool has a
        // thread for every child: blocking children that wait for a moment must not keep
        // a parent that still has to spawn from running.
        const int total = static_cast<int>(plan_.size());
        try {
            sup.wait_until([&] { return admitted_.load() == total; }, 30s, 1ms);
        } catch (const std::exception& e) {
            fail(std::string("children were not all admitted: ") + e.what());
        }
        std::exception_ptr thrown; // by the wait that saw the first failure
        for (int m = 0; m < moments_; ++m) {
            const auto failures_before = sup.failures().size();
            // A process child acts at its moment unless the supervisor has already failed
            // (then it was cancelled, by SIGTERM, while waiting for its moment).
            // When another child of the same moment fails too, the first of them may
            // cancel the process before it acts: then it is cancelled, not failed.
            int failing_in_moment = 0;
            for (const auto& c : plan_)
                if (c.moment == m && c.what != action::succeed && c.what != action::until_cancelled)
                    ++failing_in_moment;
            int readers = 0;
            for (const auto& c : plan_) {
                if (c.moment != m || (c.k != kind::process && c.k != kind::forked) ||
                    c.what == action::until_cancelled)
                    continue;
                ++readers;
                // After the first failure a process is being cancelled, but the parent is
                // woken before the siblings are signalled: one that reads its moment first
                // fails for real, and is then a later failure like any other.
                if (c.what == action::exit_nonzero || c.what == action::die_by_signal ||
                    c.what == action::sanitizer_report) {
                    std::lock_guard lock(mutex_);
                    const bool certain = first_failing_moment < 0 && failing_in_moment == 1;
                    (certain ? failed_ : may_fail_).insert(child_name(c.id));
                }
            }
            gate_.release(m);
            const std::string lines(static_cast<std::size_t>(readers), '\n');
            if (!lines.empty()) {
                [[maybe_unused]] auto n = ::write(fifo_fds[m], lines.data(), lines.size());
            }
            // A zero timeout: join_timeout while children run, or the first failure (once).
            if (std::uniform_int_distribution<int>(0, 4)(rng_) == 0) {
                try {
                    sup.wait_for(0ms);
                } catch (const warden::join_timeout&) {
                } catch (...) {
                    if (thrown)
                        fail("a zero wait threw a second failure");
                    thrown = std::current_exception();
                }
            }
            // Every child of this moment ends before the next moment is released, so
            // failures of different moments are ordered in time.
            try {
                sup.wait_until(
                    [&] {
                        auto live = sup.children();
                        return std::none_of(live.begin(), live.end(), [&](const auto& child) {
                            return std::any_of(plan_.begin(), plan_.end(), [&](const auto& c) {
                                return c.moment == m && c.what != action::until_cancelled &&
                                       child.name == child_name(c.id);
                            });
                        });
                    },
                    30s, 1ms);
            } catch (const warden::join_timeout& e) {
                fail(std::string("a moment never finished: ") + e.what());
            } catch (...) {
                if (thrown)
                    fail("a wait threw a second failure");
                thrown = std::current_exception();
            }
            if (first_failing_moment < 0 && sup.failures().size() > failures_before) {
                first_failing_moment = m;
                for (const auto& f : sup.failures())
                    first_moment_failures.insert(f.child);
            }
        }
        // Children that only end by cancellation, when nothing failed.
        sup.cancel();
        try {
            sup.wait();
        } catch (...) {
            std::string what = "?";
            if (const auto* r = warden::report_for(std::current_exception()))
                what = r->child + ": " + r->what;
            fail("join threw although the failure was already thrown by a wait: " + what +
                 (thrown ? " (a wait threw before)" : " (no wait threw)") + describe_plan());
        }
        auto first = sup.first_failure();
        if (first && !first_moment_failures.contains(first->child))
            fail("first failure " + first->child + " is not of the first failing moment");
        if (first && thrown != first->error)
            fail("the wait did not throw the first failure's own exception");
        if (!first && (first_failing_moment >= 0 || thrown))
            fail("something failed but there is no first failure");
        if (!sup.children().empty())
            fail("children still running after join");
        std::multiset<std::string> reported;
        for (const auto& f : sup.failures())
            reported.insert(f.child);
        std::set<std::string> expected;
        {
            std::lock_guard lock(mutex_);
            expected = failed_;
        }
        for (const auto& name : reported)
            if (reported.count(name) != 1)
                fail("failure of " + name + " recorded twice");
        for (const auto& name : expected)
            if (!reported.contains(name))
                fail("failure of " + name + " was lost" + describe_plan());
        std::set<std::string> possible;
        {
            std::lock_guard lock(mutex_);
            possible = may_fail_;
        }
        for (const auto& f : sup.failures())
            if (!expected.contains(f.child) && !possible.contains(f.child))
                fail("unexpected failure of " + f.child + ": " + f.what);
        // A report's child fails with its summary first; one cancelled between the report's
        // two lines (a possible failure only) has the header's part of it.
        for (const auto& f : sup.failures()) {
            for (const auto& c : plan_) {
                if (c.what != action::sanitizer_report || f.child != child_name(c.id))
                    continue;
                const auto summary = expected.contains(f.child)
                                         ? report_summary
                                         : report_summary.substr(0, report_summary.find(" in "));
                if (!f.what.starts_with(summary))
                    fail("the failure of " + f.child +
                         " does not start with its report: " + f.what + describe_plan());
            }
        }
    }
    if (dumper.joinable()) {
        dumper.request_stop();
        dumper.join();
    }
    for (int m = 0; m < moments_; ++m) {
        ::close(fifo_fds[m]);
        ::unlink(fifo_for(m).c_str());
    }
    return result;
}

struct nested_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Blocks until the token is stopped.
void block_until_stopped(std::stop_token stop) {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock(m);
    cv.wait(lock, stop, [] { return false; });
}

// An outer supervisor whose middle children each run an inner supervisor of leaves (coroutine
// middles on their own executor or on a supervisor of their own, thread middles blocked in the
// inner wait()). Then one leaf throws (its exception must come up through its middle, the
// report naming the leaf), or an outer sibling throws, or the outer is cancelled: every leaf
// must end, nothing may straggle, whatever the grace (5 s or "no limit") and whichever wait
// (no deadline, hours::max(), wait_until with poll = max()). Sometimes also a supervisor whose
// pool cannot be created, whose spawn must fail and leave nothing.
run_result nested_run(std::mt19937_64& rng) {
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    run_result result;
    auto fail = [&](std::string why) {
        if (result.ok) {
            result.ok = false;
            result.violation = std::move(why);
        }
    };
    const int middles = 1 + pick(3);
    const int leaves_each = 1 + pick(4);
    const int total = middles * leaves_each;
    enum class ending { leaf_throws, sibling_throws, cancelled } how = static_cast<ending>(pick(3));
    const int thrower = how == ending::leaf_throws ? pick(total) : -1;
    const auto grace = pick(2) == 0 ? 5000ms : std::chrono::milliseconds::max();
    std::atomic<int> started{0};
    std::atomic<int> ended{0};
    std::string plan = "\n  plan: " + std::to_string(middles) + " middles of " +
                       std::to_string(leaves_each) + " leaves, ending " +
                       std::to_string(static_cast<int>(how)) + ", thrower " +
                       std::to_string(thrower);
    auto leaf_name = [](int m, int l) {
        return "leaf" + std::to_string(m) + "." + std::to_string(l);
    };
    std::string expected = how == ending::leaf_throws
                               ? leaf_name(thrower / leaves_each, thrower % leaves_each)
                               : "sibling";
    {
        warden::supervisor outer{{.name = "outer",
                                  .threads = 4,
                                  .capture = warden::capture::location,
                                  .cancel_grace = grace}};
        for (int m = 0; m < middles; ++m) {
            const int kind_of_middle = pick(3); // coroutine on its executor, coroutine, thread
            // The thrower's middle awaits its inner supervisor: a failure nobody waits for
            // stays in the inner supervisor until it is destroyed.
            const bool joins_inner = pick(3) != 0 || m == thrower / leaves_each;
            auto coroutine_leaf = [&, m](int l) -> asio::awaitable<void> {
                ++started;
                if (m * leaves_each + l == thrower) {
                    asio::steady_timer tick(co_await asio::this_coro::executor);
                    while (started.load() < total) {
                        tick.expires_after(1ms);
                        co_await tick.async_wait(asio::use_awaitable);
                    }
                    ++ended;
                    throw nested_failure(leaf_name(m, l));
                }
                try {
                    asio::steady_timer forever(co_await asio::this_coro::executor, 1h);
                    co_await forever.async_wait(asio::use_awaitable);
                } catch (...) {
                    ++ended;
                    throw;
                }
            };
            auto thread_leaf = [&, m](int l, std::stop_token stop) {
                ++started;
                if (m * leaves_each + l == thrower) {
                    while (started.load() < total)
                        std::this_thread::yield();
                    ++ended;
                    throw nested_failure(leaf_name(m, l));
                }
                block_until_stopped(stop);
                ++ended;
            };
            plan += "\n    middle" + std::to_string(m) + ": kind " +
                    std::to_string(kind_of_middle) + (joins_inner ? ", joins" : "");
            const warden::spawn_options options{.name = "middle" + std::to_string(m)};
            if (kind_of_middle < 2) {
                outer.spawn(
                    [&, m, kind_of_middle, joins_inner, coroutine_leaf]() -> asio::awaitable<void> {
                        auto executor = co_await asio::this_coro::executor;
                        const warden::supervisor_options inner_options{
                            .name = "inner" + std::to_string(m),
                            .capture = warden::capture::location};
                        std::optional<warden::supervisor> inner;
                        if (kind_of_middle == 0)
                            inner.emplace(executor, inner_options);
                        else
                            inner.emplace(inner_options);
                        for (int l = 0; l < leaves_each; ++l)
                            inner->spawn(coroutine_leaf(l), {.name = leaf_name(m, l)});
                        if (joins_inner) {
                            co_await inner->join();
                        } else {
                            asio::steady_timer forever(executor, 1h);
                            co_await forever.async_wait(asio::use_awaitable);
                        }
                    },
                    options);
            } else {
                outer.spawn(
                    [&, m, thread_leaf] {
                        warden::supervisor inner{{.name = "inner" + std::to_string(m),
                                                  .threads = static_cast<std::size_t>(leaves_each),
                                                  .capture = warden::capture::location}};
                        for (int l = 0; l < leaves_each; ++l)
                            inner.spawn(
                                [l, thread_leaf](std::stop_token stop) { thread_leaf(l, stop); },
                                {.name = leaf_name(m, l)});
                        inner.wait();
                    },
                    options);
            }
        }
        // The failure is thrown once, by whichever wait sees it: the thrower acts as soon as
        // every leaf has started, so possibly inside this first wait.
        std::exception_ptr thrown;
        try {
            outer.wait_until([&] { return started.load() == total; }, 30s, 1ms);
        } catch (const nested_failure&) {
            thrown = std::current_exception();
        } catch (const std::exception& e) {
            fail(std::string("leaves did not all start: ") + e.what());
        }
        if (how == ending::sibling_throws)
            outer.spawn([] { throw nested_failure("sibling"); }, {.name = "sibling"});
        if (how == ending::cancelled)
            outer.cancel();
        try {
            switch (how == ending::cancelled || thrown ? pick(2) : pick(3)) {
            case 0:
                outer.wait();
                break;
            case 1:
                outer.wait_for(std::chrono::hours::max());
                break;
            default:
                outer.wait_until([] { return false; }, std::chrono::years::max(),
                                 std::chrono::steady_clock::duration::max());
            }
        } catch (const nested_failure&) {
            if (thrown)
                fail("a second wait threw the failure again" + plan);
            thrown = std::current_exception();
        } catch (const std::exception& e) {
            fail(std::string("the outer wait threw ") + e.what() + plan);
        }
        if (how == ending::cancelled && thrown) {
            fail("a cancelled run failed" + plan);
        } else if (how != ending::cancelled && !thrown) {
            fail("no failure reached the outer waits" + plan);
        } else if (thrown) {
            try {
                std::rethrow_exception(thrown);
            } catch (const nested_failure& e) {
                const auto* report = warden::report_for(std::current_exception());
                if (e.what() != expected)
                    fail("the outer wait threw " + std::string(e.what()) + ", not " + expected +
                         plan);
                else if (report == nullptr || report->innermost().child != expected)
                    fail("the report does not name " + expected + plan);
                else if (!report->stragglers.empty())
                    fail("stragglers after a nested failure" + plan);
            }
        }
    }
    if (ended.load() != started.load() || started.load() != total)
        fail("leaves started " + std::to_string(started.load()) + " of " + std::to_string(total) +
             ", ended " + std::to_string(ended.load()));
    if (pick(4) == 0) {
        warden::supervisor no_pool{{.threads = std::numeric_limits<std::size_t>::max()}};
        try {
            no_pool.spawn([] {});
            fail("a spawn on a pool that cannot exist succeeded");
        } catch (const warden::spawn_error&) {
        }
        if (!no_pool.children().empty())
            fail("a failed spawn left a child");
    }
    return result;
}

// Shells that leave descendants behind, racing with the supervisor's destruction. Each starts a
// grandchild in a new session that prints its pid (directly, through a double fork, or with a
// child of its own in that session) and a job in its own group that ends by itself a few
// milliseconds later; then it exits 0 or 1 at once or after a few milliseconds, or waits until
// it is cancelled. The run reads some of the grandchildren's pids and destroys the supervisor
// at a random moment: every one of them must be gone after, and no child process may be left,
// zombies included (the main loop's check). A grandchild in a new session never ends by itself
// here: one that ends by itself after its parent, before warden looks, is a zombie warden cannot
// attribute (docs/processes.md, "Descendants").
run_result descendants_run(std::mt19937_64& rng) {
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    run_result result;
    // Each grandchild by a pidfd opened while it runs: by the check, its pid may be another
    // process's (pid_max is 32768 here), and it must never be asked about or signalled by pid.
    struct grandchild_fd {
        pid_t pid;
        int fd;
    };
    std::vector<grandchild_fd> grandchildren;
    std::string plan;
    {
        warden::supervisor sup{{.name = "descendants"}};
        std::vector<warden::process*> shells;
        const int count = 1 + pick(4);
        for (int i = 0; i < count; ++i) {
            static const char* grandchild[] = {
                "setsid sh -c 'echo $$; exec sleep 1000' & ",
                "(setsid sh -c 'echo $$; exec sleep 1000' &); ",
                "setsid sh -c 'echo $$; sleep 1000 & exec sleep 1000' & ",
            };
            const std::string job = "sleep 0.00" + std::to_string(pick(10)) + " & ";
            static const char* end[] = {"exit 0", "exit 1", "sleep 0.005; exit 0", "wait"};
            const std::string script = grandchild[pick(3)] + job + end[pick(4)];
            plan += "\n    " + script;
            try {
                shells.push_back(&sup.spawn_process({.argv = {"sh", "-c", script}}));
            } catch (const warden::supervisor_closed&) {
                break; // a shell that exits 1 has failed the run already
            }
        }
        for (auto* shell : shells) {
            if (pick(2) == 0)
                continue;
            try {
                const pid_t pid = std::stoi(shell->wait_for_line_blocking("^[0-9]+$", 10s));
                const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
                if (fd >= 0)
                    grandchildren.push_back({pid, fd});
            } catch (const std::exception&) {
                // Its shell ended first: the grandchild went with its group, or printed later.
            }
        }
        if (pick(2) == 0)
            std::this_thread::sleep_for(std::chrono::microseconds(pick(3000)));
    }
    for (const auto& [pid, fd] : grandchildren) {
        pollfd ended{fd, POLLIN, 0};
        if (::poll(&ended, 1, 0) != 1) {
            result.ok = false;
            result.violation += " grandchild " + std::to_string(pid) + " outlived the supervisor";
            ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
        }
        ::close(fd);
    }
    if (!result.ok)
        result.violation += plan;
    return result;
}

} // namespace

int main(int argc, char** argv) {
    std::uint64_t seed = 1;
    long runs = 1000;
    long first_run = 0;
    bool verbose = false;
    std::vector<kind> kinds{kind::coroutine, kind::thread};
    bool descendants = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto next = [&]() -> std::string_view {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "warden_stress: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--seed")
            seed = std::stoull(std::string(next()));
        else if (arg == "--runs")
            runs = std::stol(std::string(next()));
        else if (arg == "--first")
            first_run = std::stol(std::string(next()));
        else if (arg == "--verbose")
            verbose = true;
        else if (arg == "--kinds") {
            kinds.clear();
            std::string list(next());
            std::size_t start = 0;
            while (start <= list.size()) {
                auto end = list.find(',', start);
                auto item = list.substr(start, end == std::string::npos ? end : end - start);
                if (item == "coroutine")
                    kinds.push_back(kind::coroutine);
                else if (item == "thread")
                    kinds.push_back(kind::thread);
                else if (item == "process")
                    kinds.push_back(kind::process);
                else if (item == "forked")
                    kinds.push_back(kind::forked);
                else if (item == "descendants")
                    descendants = true;
                else {
                    std::fprintf(stderr, "warden_stress: unknown kind '%s'\n", item.c_str());
                    return 2;
                }
                if (end == std::string::npos)
                    break;
                start = end + 1;
            }
        } else {
            std::fprintf(stderr, "usage: warden_stress [--seed N] [--runs N] "
                                 "[--kinds coroutine,thread,process,forked,descendants] "
                                 "[--verbose]\n");
            return 2;
        }
    }
    // Failures are the point here; their reports would flood the terminal.
    warden::supervisor{}.spawn([] {}).get();
    if (auto logger = spdlog::get("warden"))
        logger->set_level(spdlog::level::off);
    // Before the baselines: what lives as long as the process by design. A spawn stack
    // captured through libunwind (which keeps a pipe open from its first use) and a failure
    // report symbolised (which starts the process-wide symbolising thread).
    {
        warden::supervisor warm_up{{.capture = warden::capture::stacktrace}};
        warm_up.spawn([] { throw std::runtime_error("warm-up"); });
        try {
            warm_up.wait();
        } catch (const std::runtime_error&) {
            // A report is written by its first reader: reading it is what symbolises.
            if (const auto* report = warden::report_for(std::current_exception())) {
                [[maybe_unused]] const auto text = report->to_string();
            }
        }
    }

    auto dir =
        std::filesystem::temp_directory_path() / ("warden_stress." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto threads_before = warden_test::thread_count();
    const auto fds_before = warden_test::fd_count();
    long violations = 0;
    const auto start = std::chrono::steady_clock::now();
    for (long r = first_run; r < runs; ++r) {
        // One generator per run, seeded from (seed, run): any run replays on its own.
        std::seed_seq seq{seed, static_cast<std::uint64_t>(r)};
        std::mt19937_64 rng(seq);
        const bool blocking_kinds = std::any_of(kinds.begin(), kinds.end(), [](kind k) {
            return k == kind::coroutine || k == kind::thread;
        });
        run_result result;
        if (descendants && (kinds.empty() || r % 2 == 1)) {
            result = descendants_run(rng);
        } else if (blocking_kinds && r % 4 == 3) {
            result = nested_run(rng);
        } else {
            stress_run run(rng, kinds, dir);
            result = run.execute();
        }
        if (const auto t = warden_test::thread_count_once_settled(threads_before);
            t != threads_before) {
            result.ok = false;
            result.violation +=
                " threads " + std::to_string(threads_before) + " -> " + std::to_string(t);
        }
        if (const auto f = warden_test::fd_count(); f != fds_before) {
            result.ok = false;
            result.violation += " fds " + std::to_string(fds_before) + " -> " + std::to_string(f);
        }
        if (has_child_processes()) {
            result.ok = false;
            result.violation += " child processes left:" + describe_children();
            end_children_left();
        }
        if (!result.ok) {
            ++violations;
            std::fprintf(
                stderr, "violation in run %ld (replay: --seed %llu --first %ld --runs %ld): %s\n",
                r, static_cast<unsigned long long>(seed), r, r + 1, result.violation.c_str());
        } else if (verbose && r % 1000 == 0) {
            std::fprintf(stderr, "run %ld ok\n", r);
        }
    }
    std::filesystem::remove_all(dir);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("warden_stress: seed %llu, %ld runs, %ld violations, %.1f s\n",
                static_cast<unsigned long long>(seed), runs, violations, seconds);
    return violations == 0 ? 0 : 1;
}
