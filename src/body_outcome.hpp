#pragma once

// How a child's body ended, as the code that ran it saw it: the one thing every kind of child
// reports to its supervisor. Private to src/.

#include <exception>
#include <string>
#include <utility>

namespace warden::detail {

// Three ways to end, as a task's parent sees them in corral and stdexec: a value, an
// exception, or stopped. Only supervisor_core::child_finished turns one into the child's
// outcome (succeeded, failed or cancelled): a body that throws an "operation aborted" after
// its cancellation was requested is cancelled, any other exception is a failure.
class body_outcome {
  public:
    enum class ending { returned, threw, stopped };

    // The body returned; a process exited 0 with no sanitizer report.
    static body_outcome returned() noexcept { return body_outcome(ending::returned, {}, {}); }
    // The body threw `error`, or a process failed with it.
    static body_outcome threw(std::exception_ptr error) noexcept {
        const auto how = error ? ending::threw : ending::returned;
        return body_outcome(how, std::move(error), {});
    }
    // warden stopped the body before it ran or while it ran: a job cancelled while queued, a
    // process ended by its cancellation, a spawn that failed after admission. `why` is what
    // the child's task says: it throws operation_aborted with it.
    static body_outcome stopped(std::string why) noexcept {
        return body_outcome(ending::stopped, {}, std::move(why));
    }

    ending how() const noexcept { return how_; }
    const std::exception_ptr& error() const noexcept { return error_; }
    const std::string& why() const noexcept { return why_; }

  private:
    body_outcome(ending how, std::exception_ptr error, std::string why) noexcept
        : how_(how)
        , error_(std::move(error))
        , why_(std::move(why)) {}

    ending how_;
    std::exception_ptr error_;
    std::string why_;
};

// True for an exception that says "operation aborted": Asio's operation_aborted,
// std::errc::operation_canceled, or a spawn refused because the spawner was being cancelled.
bool is_cancellation(const std::exception_ptr& error) noexcept;

// What the supervisor decided a child's end is. Written once, by child_finished.
enum class child_end { succeeded, failed, cancelled };

} // namespace warden::detail
