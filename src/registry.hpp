#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <warden/detail/function.hpp>
#include <warden/report.hpp>

namespace warden::detail {

// A report that is written when someone first reads it. Writing one costs microseconds
// (what(), the type's name) to milliseconds (symbols; the first symbolisation of a process
// loads the debug information, ~100 ms): a waiter throws the child's exception at once, and
// the text is made by the first reader (report_for, the log) on the reader's thread.
class pending_report {
  public:
    pending_report(std::exception_ptr error, unique_function<failure_report()> write)
        : error_(std::move(error))
        , write_(std::move(write)) {}
    pending_report(const pending_report&) = delete;
    pending_report& operator=(const pending_report&) = delete;

    const std::exception_ptr& error() const noexcept { return error_; }
    // Writes the report on the first call; then the same report. Throws what writing throws
    // (out of memory); the next call tries again.
    std::shared_ptr<const failure_report> get();

  private:
    std::exception_ptr error_;
    // Called without a lock, perhaps by two readers at once (the first to finish is kept):
    // a reader that held a lock while symbolising would wait for the symbolising thread,
    // which may itself be writing this report for the log and wait for that lock.
    unique_function<failure_report()> write_; // never reassigned: calls may overlap
    std::mutex mutex_;
    std::shared_ptr<const failure_report> report_;
};

// Makes a report findable by report_for(error); `write` runs when it is first read.
std::shared_ptr<pending_report> register_report(std::exception_ptr error,
                                                unique_function<failure_report()> write);
// The newest report registered for this exception object, unwritten; or null.
std::shared_ptr<pending_report> find_report(const std::exception_ptr& error) noexcept;

// The running test's name (set_current_test), shared by every origin recorded in it; null
// outside a test.
std::shared_ptr<const std::string> current_test_shared();

// The environment variable that tells a spawned program where it was spawned from.
inline constexpr std::string_view origin_variable = "WARDEN_ORIGIN";
// Longest value warden gives it: a long chain is cut in its middle.
inline constexpr std::size_t max_origin_value_size = 4096;

// This process's WARDEN_ORIGIN, read from the environment at the first call (any thread);
// empty if unset. The reference stays valid for the life of the process.
const std::string& outer_origin();
// Makes `value` this process's outer origin: for a forked child, whose copy of its parent's
// is stale. The old value is never freed, so references to it stay valid.
void set_outer_origin(std::string value);
// The WARDEN_ORIGIN value for a child spawned at `o` (whose `outer` is this process's): one
// line, `test "<name>" at <file>:<line>, by child <parent>, supervisor <name>, pid <pid>`
// (test and child when known), then ` <- ` and `o.outer` if any; control characters become
// blanks, and past max_origin_value_size the middle is cut out and replaced by "...".
std::string origin_value(const origin& o);

std::string first_line(const failure_report& report);
// "spawned at file:line in f", "in test ...", "by child ...", "supervisor ..." lines.
std::string describe_origin(const origin& o, std::string_view indent);

} // namespace warden::detail
