#pragma once

// The failures of a supervisor, the first first. Private to src/.

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>

#include <warden/report.hpp>

#include "failure_record.hpp"

namespace warden::detail {

// Guarded by the supervisor's mutex. The failure that finds the ledger empty is the first;
// later ones become the `suppressed` lines of its report.
class failure_ledger {
  public:
    using record_ptr = std::shared_ptr<failure_record>;

    // Returns true when `r` is the first failure.
    bool add(record_ptr r, std::chrono::steady_clock::time_point now) {
        const bool first = failures_.empty();
        failures_.push_back(std::move(r));
        if (first)
            first_at_ = now;
        return first;
    }

    bool empty() const noexcept { return failures_.empty(); }
    const record_ptr& first() const noexcept { return failures_.front(); }
    std::chrono::steady_clock::time_point first_at() const noexcept { return first_at_; }
    bool first_observed() const noexcept { return !empty() && first()->observed; }
    const std::deque<record_ptr>& all() const noexcept { return failures_; }

    // The failure a wait throws next, or null: under fail_fast only the first is ever thrown,
    // under collect each once.
    const record_ptr* first_unobserved(bool first_only) const noexcept {
        if (first_only)
            return failures_.empty() || failures_.front()->observed ? nullptr : &failures_.front();
        for (const auto& r : failures_)
            if (!r->observed)
                return &r;
        return nullptr;
    }

    // The log lines of failures still being written on the symbolising thread: the
    // supervisor's end waits for them, so none is lost and none outlives it.
    void owe_log_line() noexcept { ++log_lines_owed_; }
    void log_line_written() noexcept { --log_lines_owed_; }
    bool log_lines_owed() const noexcept { return log_lines_owed_ > 0; }

  private:
    std::deque<record_ptr> failures_;
    std::chrono::steady_clock::time_point first_at_;
    int log_lines_owed_ = 0;
};

} // namespace warden::detail
