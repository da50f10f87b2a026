#pragma once

// Matching output lines against wait_for_line patterns without holding up the supervisor.
// Private to src/; docs/processes.md ("wait_for_line") tells why it is built this way.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include <pthread.h>

#include <boost/asio/steady_timer.hpp>

#include <warden/detail/function.hpp>

namespace warden::detail {

// True if `pattern` has no ECMAScript metacharacter: std::regex_search would then find exactly
// the lines that contain it, which a substring search finds without std::regex.
bool is_plain_pattern(std::string_view pattern) noexcept;

// One wait_for_line call. It completes exactly once, through `complete`: by a matching line,
// by the end of the process, at its timeout, or when its awaiting coroutine is cancelled.
// Whichever of those wins claim() completes it; the others see it claimed and do nothing.
struct line_waiter {
    // A plain pattern, matched as a substring.
    explicit line_waiter(std::string plain)
        : pattern_text(std::move(plain)) {}
    line_waiter(std::regex re, std::string text)
        : pattern(std::move(re))
        , pattern_text(std::move(text)) {}

    bool claim() noexcept { return !claimed.exchange(true, std::memory_order_acq_rel); }

    const std::optional<std::regex> pattern; // empty: pattern_text is plain
    const std::string pattern_text;          // the plain pattern; else for messages
    // Also read by the matcher thread, which abandons this waiter's match once it is set.
    std::atomic<bool> claimed{false};
    // Set before the waiter is registered; called once, by the claimer, with no lock held.
    unique_function<void(std::exception_ptr, std::string)> complete;
    // Coroutine waits only. Created, waited on and cancelled on the executor only.
    std::optional<boost::asio::steady_timer> timer;
    // Matcher thread only: a verdict for this waiter has been sent.
    bool settled_by_matcher = false;
};

// What the matcher found for one regex waiter: a matching line, an error (regex_error with
// error_complexity or error_stack), or `ended`: no line of the process matched.
struct match_verdict {
    std::shared_ptr<line_waiter> waiter;
    std::shared_ptr<const std::string> line;
    std::exception_ptr error;
    bool ended = false;
};

// std::regex_search, abandonable and bounded. libstdc++'s matcher backtracks by recursion,
// about 224 bytes of stack per character of the line for `a*b` and 560 for `(a|b)*c` at -O2,
// and an unlucky pattern takes exponential time. So it runs on an iterator that, at every step,
// checks the stack left (regex_error(error_stack) below a margin), counts steps against a
// budget (regex_error(error_complexity)), and gives up when `abandon` or `stop` is set
// (match_abandoned). Only on a line_matcher thread, whose stack it knows.
struct match_abandoned {};
bool bounded_regex_search(std::string_view line, const std::regex& pattern,
                          const std::atomic<bool>& abandon, const std::atomic<bool>& stop);

// One process's matching thread, started by the first regex waiter, with a stack large enough
// for any line warden keeps (64 MiB reserved). Lines are tested in the order they were
// submitted; verdicts go to `deliver`, which must not block (it posts to the supervisor's
// executor).
//
// The supervisor keeps a finished process until its own end, so a matcher must not keep its
// thread for that long: a long-lived supervisor running processes in turn, each waited for
// with a regex, had one idle thread per process it ever ran. Once the process has ended
// (retire_when_idle), the thread ends when its queue is empty, calling `retired` just before
// so that its owner joins it from another thread (join_retired); a waiter that comes later
// starts a new one for its own lines. Test: "a finished process's regex matcher thread ends".
//
//   state    | how it gets there                  | what runs
//   ---------+------------------------------------+---------------------------------------
//   idle     | constructed; join_retired()        | nothing
//   running  | submit() while idle                | the thread, taking jobs in order
//   retired  | queue empty after retire_when_idle | nothing: the thread has ended or is
//            |                                    | ending, not joined yet; submit() joins
//            |                                    | it and starts another
//   stopping | stop()                             | the current match is abandoned; every
//            |                                    | waiter left unsettled gets `ended`; then
//            |                                    | the thread ends
//   stopped  | the thread has ended               | nothing; stop() joined it
class line_matcher {
  public:
    using deliver_function = unique_function<void(match_verdict)>;

    line_matcher(deliver_function deliver, unique_function<void()> retired);
    ~line_matcher(); // abandon()
    line_matcher(const line_matcher&) = delete;
    line_matcher& operator=(const line_matcher&) = delete;

    // Tests `line` for each waiter, or with a null line, says `ended` to each waiter that has
    // had no verdict yet. False (nothing queued) when more than max_pending_bytes of lines
    // already wait: the caller fails those waiters instead. Throws std::system_error if the
    // thread cannot be started.
    bool submit(std::shared_ptr<const std::string> line,
                std::vector<std::shared_ptr<line_waiter>> waiters);
    // Abandons the current match, settles every queued waiter as ended, joins the thread.
    void stop() noexcept;
    // No line will come any more (the process has ended): the thread ends once idle.
    void retire_when_idle() noexcept;
    // Joins the thread if it has retired; else nothing.
    void join_retired() noexcept;
    // The same without any verdict: for when the executor they would be posted to is gone.
    void abandon() noexcept;

    // Lines waiting for a slow pattern are bounded: at most 256 lines of the longest kind.
    static constexpr std::size_t max_pending_bytes = 16 * 1024 * 1024;

  private:
    struct job {
        std::shared_ptr<const std::string> line; // null: the process has ended
        std::vector<std::shared_ptr<line_waiter>> waiters;
    };
    static void* thread_main(void* self) noexcept;
    void serve() noexcept;
    void run(job& j);

    enum class thread_state { none, running, retired };

    deliver_function deliver_;
    unique_function<void()> retired_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<job> jobs_;
    std::size_t pending_bytes_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> silent_{false};
    bool retiring_ = false;                          // under mutex_
    thread_state thread_state_ = thread_state::none; // under mutex_
    pthread_t thread_{};
};

} // namespace warden::detail
