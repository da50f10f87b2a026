// A child process's output as lines: the tail it keeps, and the wait_for_line waiters they
// settle.

#include <warden/process.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>

#include <fmt/format.h>

#include "core.hpp"
#include "log.hpp"
#include "process_state.hpp"

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace warden::detail {

namespace {

// A longer line is cut: memory stays bounded by output_tail lines of this size.
constexpr std::size_t max_line_bytes = 64 * 1024;

} // namespace

void process_state::consume_output(const char* data, std::size_t n) {
    while (n > 0) {
        const auto* newline = static_cast<const char*>(std::memchr(data, '\n', n));
        const std::size_t length =
            newline != nullptr ? static_cast<std::size_t>(newline - data) : n;
        const std::size_t room =
            partial_.size() < max_line_bytes ? max_line_bytes - partial_.size() : 0;
        const std::size_t taken = std::min(length, room);
        partial_.append(data, taken);
        partial_cut_ += length - taken;
        if (newline == nullptr)
            return;
        end_line();
        data += length + 1;
        n -= length + 1;
    }
}

void process_state::end_line() {
    if (partial_cut_ == 0 && !partial_.empty() && partial_.back() == '\r')
        partial_.pop_back();
    std::string line = std::move(partial_);
    partial_.clear();
    sanitizer_.feed_line(line);
    if (partial_cut_ > 0) {
        line += fmt::format(" [warden: {} bytes cut]", partial_cut_);
        partial_cut_ = 0;
    }
    push_line(std::move(line));
}

void process_state::push_line(std::string line) {
    if (log().should_log(spdlog::level::debug))
        log().debug("{}: {}", name(), line);
    std::vector<std::pair<std::shared_ptr<line_waiter>, std::exception_ptr>> matched;
    {
        std::lock_guard lock(mutex_);
        std::vector<std::shared_ptr<line_waiter>> regex_waiters;
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            if ((*it)->pattern) {
                regex_waiters.push_back(*it);
                ++it;
                continue;
            }
            if (line.find((*it)->pattern_text) == std::string::npos) {
                ++it;
                continue;
            }
            if ((*it)->claim())
                matched.emplace_back(*it, nullptr);
            it = waiters_.erase(it);
        }
        if (!regex_waiters.empty() &&
            !submit_to_matcher_locked(std::make_shared<const std::string>(line), regex_waiters)) {
            // The matcher is more than max_pending_bytes behind: the pattern is too slow for
            // this output, which it would otherwise have to keep without bound.
            const auto error =
                std::make_exception_ptr(std::regex_error(std::regex_constants::error_complexity));
            for (auto& w : regex_waiters) {
                if (w->claim())
                    matched.emplace_back(w, error);
                std::erase(waiters_, w);
            }
        }
        if (tail_limit_ > 0) {
            tail_.push_back(matched.empty() ? std::move(line) : line);
            while (tail_.size() > tail_limit_)
                tail_.pop_front();
        }
    }
    for (auto& [w, error] : matched) {
        if (w->timer)
            w->timer->cancel();
        w->complete(error, error ? std::string() : line);
    }
}

// The process's own failure, the same exception object its task throws: a child that rethrows
// it gets a report of its own that links to the process's (passed up from).
std::exception_ptr process_state::ended_error(const line_waiter& w) const {
    if (outcome_.how() == body_outcome::ending::threw)
        return outcome_.error();
    if (outcome_.how() == body_outcome::ending::stopped)
        return std::make_exception_ptr(
            boost::system::system_error(asio::error::operation_aborted, outcome_.why()));
    return std::make_exception_ptr(
        timeout_error(fmt::format("warden: process {} (pid {}) exited with code 0 before printing "
                                  "a line matching `{}`",
                                  name(), pid_, w.pattern_text),
                      tail_locked()));
}

std::exception_ptr process_state::timeout_for(const line_waiter& w, duration timeout) const {
    std::lock_guard lock(mutex_);
    return std::make_exception_ptr(timeout_error(
        fmt::format("warden: no line matching `{}` from process {} (pid {}) within {:.3f} s",
                    w.pattern_text, name(), pid_, std::chrono::duration<double>(timeout).count()),
        tail_locked()));
}

std::vector<std::string> process_state::tail_locked() const {
    return {tail_.begin(), tail_.end()};
}

std::vector<std::string> process_state::output_tail() const {
    std::lock_guard lock(mutex_);
    return tail_locked();
}

std::optional<int> process_state::wait_status() const {
    std::lock_guard lock(mutex_);
    return status_;
}

void process_state::add_waiter(const std::shared_ptr<line_waiter>& w,
                               std::optional<duration> timeout) {
    std::optional<std::string> found;
    std::exception_ptr error;
    {
        std::lock_guard lock(mutex_);
        if (w->pattern) {
            // The tail, then (if the process has ended) the end, then each new line, all in
            // order on the matcher's thread.
            for (const auto& line : tail_)
                submit_to_matcher_locked(std::make_shared<const std::string>(line), {w});
            if (finished_)
                submit_to_matcher_locked(nullptr, {w});
            else
                waiters_.push_back(w);
            if (timeout)
                arm_waiter_timer(w, *timeout);
            return;
        }
        for (const auto& line : tail_) {
            if (line.find(w->pattern_text) != std::string::npos) {
                found = line;
                break;
            }
        }
        if (!found) {
            if (!finished_) {
                waiters_.push_back(w);
                if (timeout)
                    arm_waiter_timer(w, *timeout);
                return;
            }
            error = ended_error(*w);
        }
        if (!w->claim())
            return;
    }
    w->complete(error, found ? std::move(*found) : std::string());
}

void process_state::arm_waiter_timer(const std::shared_ptr<line_waiter>& w, duration timeout) {
    asio::post(executor_, [self = shared_from_this(), w, timeout] {
        if (w->claimed.load(std::memory_order_acquire))
            return;
        w->timer.emplace(self->executor_, timeout);
        w->timer->async_wait([self, w, timeout](const boost::system::error_code& ec) {
            if (ec || !w->claim())
                return;
            self->remove_waiter(w.get());
            w->complete(self->timeout_for(*w, timeout), {});
        });
    });
}

bool process_state::submit_to_matcher_locked(std::shared_ptr<const std::string> line,
                                             std::vector<std::shared_ptr<line_waiter>> waiters) {
    if (!matcher_) {
        // The verdict is posted, not handled on the matcher's thread: waiters' timers live on
        // the executor. The weak reference is locked there, never on the matcher's thread, so
        // the state is never destroyed by the thread its destructor joins.
        matcher_ = std::make_unique<line_matcher>(
            [weak = weak_from_this(), executor = executor_](match_verdict verdict) {
                asio::post(executor, [weak, verdict = std::move(verdict)]() mutable {
                    if (auto self = weak.lock())
                        self->settle(std::move(verdict));
                });
            },
            [weak = weak_from_this(), executor = executor_] {
                asio::post(executor, [weak] {
                    if (auto self = weak.lock())
                        self->join_retired_matcher();
                });
            });
    }
    const bool submitted = matcher_->submit(std::move(line), std::move(waiters));
    // A waiter after the end brings only the tail's lines: its thread ends once they are done.
    if (finished_)
        matcher_->retire_when_idle();
    return submitted;
}

void process_state::join_retired_matcher() noexcept {
    // The retired thread takes no lock of ours on its way out: joining under mutex_ keeps
    // stop_matching() from taking the matcher away meanwhile.
    std::lock_guard lock(mutex_);
    if (matcher_)
        matcher_->join_retired();
}

void process_state::settle(match_verdict verdict) {
    auto& w = verdict.waiter;
    std::exception_ptr error = verdict.error;
    {
        std::lock_guard lock(mutex_);
        if (!w->claim())
            return;
        std::erase(waiters_, w);
        if (verdict.ended)
            error = ended_error(*w);
    }
    if (w->timer)
        w->timer->cancel();
    w->complete(error, verdict.line && !error ? *verdict.line : std::string());
}

void process_state::stop_matching() noexcept {
    std::unique_ptr<line_matcher> matcher;
    {
        std::lock_guard lock(mutex_);
        matcher = std::move(matcher_);
    }
    if (matcher)
        matcher->stop();
}

void process_state::remove_waiter(const line_waiter* w) {
    std::lock_guard lock(mutex_);
    std::erase_if(waiters_, [w](const auto& p) { return p.get() == w; });
}

void process_state::cancel_waiter_timer(const std::shared_ptr<line_waiter>& w) {
    asio::post(executor_, [w] {
        if (w->timer)
            w->timer->cancel();
    });
}

} // namespace warden::detail
