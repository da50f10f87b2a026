#pragma once

// A child's failure as warden keeps it, the report made from it, and how report_for() finds
// it. Private to src/.

#include <exception>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <warden/report.hpp>

namespace warden::detail {

struct stack_capture;

// One failed child's failure: made by the supervisor as the child ends, before any waiter
// wakes, and found again by the child's exception object (report_for) or the supervisor's
// ledger, never copied.
//
// Nothing slow is done on the way to the waiters. What() and the type name (microseconds) and
// the symbolised spawn and throw stacks (milliseconds; the throw's frames are found by the
// exception object, which `report.error` keeps alive) are filled in by whoever first writes
// the report. Each is made without a lock and published under `mutex` (two writers at once
// may both make it; the first is kept): a writer holding a lock while it symbolises would
// wait for the symbolising thread, which may be writing this very report for the log.
// Shared: a report written after the supervisor is gone (report_for in a catch block outside
// its scope) reads it.
struct failure_record {
    failure_report report; // what, type and the stacks: under `mutex` once published
    std::shared_ptr<const stack_capture> spawn_stack;
    // The failure of the child this one's exception object came up from (a nested
    // supervisor's, or a task this child awaited): its report becomes this report's `inner`.
    std::shared_ptr<failure_record> passed_up_from;

    // What the wait that threw this failure knew: the failures after it and the children
    // still running. report_for() gives the report with them once a wait has thrown it. Weak:
    // a later failure may have been passed up from this one (a child that awaited the
    // failed task), and it holds this one as its `passed_up_from`. A later failure is newer,
    // so it is kept at least as long as this one was before the wait threw it.
    struct as_thrown {
        std::vector<std::weak_ptr<failure_record>> later;
        std::size_t later_not_kept = 0;
        std::vector<std::string> stragglers;
    };

    // Its place among the failures kept for report_for (failure_record.cpp), under that
    // list's lock; empty once it is no longer kept.
    std::optional<std::list<std::shared_ptr<failure_record>>::iterator> kept_at;

    std::mutex mutex;
    bool described = false;
    bool symbolised = false;
    std::optional<as_thrown> thrown;                         // under `mutex`
    std::shared_ptr<const failure_report> written;           // under `mutex`
    std::shared_ptr<const failure_report> written_as_thrown; // under `mutex`
};

// The report of `r`, with the first line of each of `later` as its suppressed failures (after
// one line counting the `later_not_kept` older ones, if any) and `stragglers` as the children
// still running. Call without a lock held: it may symbolise.
failure_report write_report(failure_record& r,
                            const std::vector<std::shared_ptr<failure_record>>& later = {},
                            const std::vector<std::string>& stragglers = {},
                            std::size_t later_not_kept = 0);
// The report of `r` as it failed, written once and kept: what the log prints.
std::shared_ptr<const failure_report> kept_report(failure_record& r);
// What report_for() gives for `r`: the report as thrown by a wait if one threw it, else as
// it failed. Written once each and kept, so a pointer to it stays valid while `r` lives.
std::shared_ptr<const failure_report> report_for_record(failure_record& r);

// Makes `r` the newest failure of its exception object, at its child's end. report_for() gives
// the newest; the last 1024 failures are kept. Returns the oldest, when it was dropped to
// make room: for the caller to destroy once the failure's waiters are woken (its report's
// text, its exception object and what that owns go with it: microseconds).
[[nodiscard]] std::shared_ptr<failure_record>
remember_failure(const std::shared_ptr<failure_record>& r);
// A wait throws `r`: its report gains `thrown`, and `r` becomes the newest again.
void remember_thrown(const std::shared_ptr<failure_record>& r, failure_record::as_thrown thrown);
// The newest failure of this exception object, or null.
std::shared_ptr<failure_record> find_failure(const std::exception_ptr& error) noexcept;

} // namespace warden::detail
