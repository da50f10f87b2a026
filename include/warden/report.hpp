#pragma once

#include <chrono>
#include <exception>
#include <memory>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include <warden/options.hpp>

namespace warden {

// Where a child came from: recorded at spawn, printed in every report about it.
struct origin {
    std::source_location where; // the spawn call
    std::string stacktrace;     // symbolised spawn stack; empty under capture::location
    std::string test;           // the test running at spawn, if any
    std::string parent;         // the spawning child's name, or empty
    std::string supervisor;     // the supervisor's name
    // Where this program itself was started by a warden in another process (its WARDEN_ORIGIN:
    // that spawn's test, file:line, supervisor and pid, then theirs); empty if it was not.
    std::string outer;
};

// One failed child, as a person wants to read it.
struct failure_report {
    std::exception_ptr error; // the child's own exception object
    std::string what;         // what(), or the type name for non-std::exception objects
    std::string child;
    child_kind kind = child_kind::coroutine;
    warden::origin origin;
    std::chrono::system_clock::time_point when;
    std::vector<std::string> suppressed; // later failures (fail_fast), one line each
    std::string type;                    // demangled type of the exception object
    // The stack at the `throw` of the exception object (a rethrow keeps it), the function with
    // the throw expression first, symbolised; empty under capture::location and where it
    // could not be recorded (docs/design.md, "Throw sites").
    std::string throw_stack;
    std::vector<std::string> stragglers; // children still running when join gave up waiting
    // When the exception came up from another child that failed with the same object first
    // (an inner supervisor's join in this child, or a task this child awaited): that child's
    // report. Followed to the end, it names the child that threw; to_string() lists the chain.
    std::shared_ptr<const failure_report> inner;

    // The end of the `inner` chain: this report itself if the child threw on its own.
    const failure_report& innermost() const noexcept;

    // "<child> (<kind>) failed: <what>", then where it was spawned, in which test, the stacks
    // (where it was thrown, then the spawn).
    std::string to_string() const;
    // The same as one JSON object (every field above, the origin as a nested object), for
    // machines: CI dashboards, the fixtures' report files (docs/test-frameworks.md).
    std::string to_json() const;
};

enum class child_state { running, cancelling };

// A live child, as sup.children() shows it.
struct child_info {
    std::string name;
    child_kind kind;
    child_state state;
    warden::origin origin;
    std::chrono::steady_clock::duration running_for;
    // Where the child is at this moment (docs/hang-reports.md): filled by
    // children(warden::with_stacks), empty from children().
    std::string now;
};

// Asks children() for each child's `now`, which costs a signal to each running thread
// child and a look at /proc for each process.
struct with_stacks_t {
    explicit with_stacks_t() = default;
};
inline constexpr with_stacks_t with_stacks{};

std::string_view to_string(child_kind) noexcept;

// The report of an exception thrown by warden (join, wait, task::get), or nullptr.
// Reports are kept for the last 1024 failures of the process (see docs/design.md).
const failure_report* report_for(const std::exception_ptr&) noexcept;

// The name of the test now running, recorded in every origin. The doctest integration sets
// it; other frameworks may call it from their own test-start hook.
void set_current_test(std::string name);
std::string current_test();

} // namespace warden
