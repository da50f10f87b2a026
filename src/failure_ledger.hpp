#pragma once

// The failures of a supervisor, the first first. Private to src/.

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <warden/report.hpp>

#include "failure_record.hpp"

namespace warden::detail {

// Guarded by the supervisor's mutex. The failure that finds the ledger empty is the first;
// later ones become the `suppressed` lines of its report.
//
// The failures a wait has thrown are a prefix of the ledger: a wait throws the oldest one not
// thrown yet, or all of them. Under collect a supervisor can live long and fail often (a
// service loop that restarts what fails), and every failure it keeps costs memory and a line
// of the first report: past max_kept_thrown, the oldest later failures that a wait has already
// thrown are let go, and counted. The first is always kept, and so is every failure no wait
// has thrown yet: nothing is let go before someone has seen it. Test: "a collect supervisor
// that fails forever keeps a bounded number of failures".
class failure_ledger {
  public:
    using record_ptr = std::shared_ptr<failure_record>;

    static constexpr std::size_t max_kept_thrown = 1024;

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
    bool first_observed() const noexcept { return thrown_ > 0; }
    // The failures kept, in the order they happened.
    const std::deque<record_ptr>& all() const noexcept { return failures_; }
    // How many later failures were let go, all of them older than the later ones kept.
    std::size_t not_kept() const noexcept { return not_kept_; }

    // The failure a wait throws next, or null: under fail_fast only the first is ever thrown,
    // under collect each once.
    const record_ptr* first_unobserved(bool first_only) const noexcept {
        if (thrown_ == failures_.size() || (first_only && thrown_ > 0))
            return nullptr;
        return &failures_[thrown_];
    }

    // Marks first_unobserved() thrown, and returns it. The failures this lets go are moved to
    // `let_go`, for the caller to destroy after the unlock (an exception's destructor is the
    // user's code).
    record_ptr observe_next(std::vector<record_ptr>& let_go) {
        record_ptr r = failures_[thrown_++];
        let_go_of_old_thrown(let_go);
        return r;
    }

    // Marks every failure not thrown yet thrown, and returns them in order.
    std::vector<record_ptr> observe_rest(std::vector<record_ptr>& let_go) {
        std::vector<record_ptr> rest(failures_.begin() + static_cast<std::ptrdiff_t>(thrown_),
                                     failures_.end());
        thrown_ = failures_.size();
        let_go_of_old_thrown(let_go);
        return rest;
    }

    // The log lines of failures still being written on the symbolising thread: the
    // supervisor's end waits for them, so none is lost and none outlives it.
    void owe_log_line() noexcept { ++log_lines_owed_; }
    void log_line_written() noexcept { --log_lines_owed_; }
    bool log_lines_owed() const noexcept { return log_lines_owed_ > 0; }

  private:
    // failures_[0] is the first, kept; failures_[1, thrown_) are the later ones thrown.
    void let_go_of_old_thrown(std::vector<record_ptr>& let_go) {
        while (thrown_ > 1 + max_kept_thrown) {
            let_go.push_back(std::move(failures_[1]));
            failures_.erase(failures_.begin() + 1);
            --thrown_;
            ++not_kept_;
        }
    }

    std::deque<record_ptr> failures_;
    std::size_t thrown_ = 0;
    std::size_t not_kept_ = 0;
    std::chrono::steady_clock::time_point first_at_;
    int log_lines_owed_ = 0;
};

} // namespace warden::detail
