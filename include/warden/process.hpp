#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include <warden/detail/duration.hpp>
#include <warden/task.hpp>

namespace warden {

namespace detail {
class process_state;
}

// A supervised subprocess (spawn_process) or forked child (spawn_forked). Owned by its
// supervisor: the reference stays valid until the supervisor is destroyed.
//
// Every member may be called from any thread.
class process {
  public:
    explicit process(std::shared_ptr<detail::process_state> state);
    ~process();
    process(const process&) = delete;
    process& operator=(const process&) = delete;

    int pid() const noexcept;
    const std::string& name() const noexcept;
    // True once the process has been reaped and its outcome recorded by the supervisor.
    bool done() const noexcept;

    // The first line of stdout or stderr matching `pattern` (std::regex_search), looking first
    // at the lines still in the output tail, then at new ones. Throws the process's own failure
    // at once if it ends first (timeout_error if it ended successfully: the line cannot come
    // any more), timeout_error with the output tail at `timeout`, and
    // system_error(operation_aborted) if the awaiting coroutine is cancelled.
    //
    // Prefer the string_view overload inside co_await: g++ 12 destroys a temporary std::regex
    // written in the co_await expression twice (`co_await p.wait_for_line("started", 5s)` is
    // safe, `co_await p.wait_for_line(std::regex("started"), 5s)` is not).
    boost::asio::awaitable<std::string> wait_for_line(std::string_view pattern,
                                                      std::chrono::steady_clock::duration timeout);
    boost::asio::awaitable<std::string> wait_for_line(std::regex pattern,
                                                      std::chrono::steady_clock::duration timeout);
    // The same, blocking the calling thread (for tests without coroutines). Throws
    // std::logic_error on the supervisor's own I/O thread, which reads the output.
    std::string wait_for_line_blocking(std::string_view pattern,
                                       std::chrono::steady_clock::duration timeout);
    std::string wait_for_line_blocking(std::regex pattern,
                                       std::chrono::steady_clock::duration timeout);

    // Any other duration saturates to the clock's range: `hours::max()` waits without a limit.
    template <class Pattern, detail::other_duration Duration>
    boost::asio::awaitable<std::string> wait_for_line(Pattern&& pattern, Duration timeout) {
        return wait_for_line(std::forward<Pattern>(pattern), detail::saturate(timeout));
    }
    template <class Pattern, detail::other_duration Duration>
    std::string wait_for_line_blocking(Pattern&& pattern, Duration timeout) {
        return wait_for_line_blocking(std::forward<Pattern>(pattern), detail::saturate(timeout));
    }

    // The last output_tail lines of stdout and stderr, oldest first. Lines longer than 64 KiB
    // are cut, ending in a "[warden: N bytes cut]" marker.
    std::vector<std::string> output_tail() const;
    // SIGTERM to the process's group, then SIGKILL after the supervisor's cancel_grace. The
    // process then ends as cancelled, which is not a failure.
    void terminate();
    // The process as a task: completes when it has been reaped.
    task<void> as_task() const;
    // The raw waitpid() status (use WIFEXITED, WTERMSIG, ...) once reaped; empty before.
    std::optional<int> wait_status() const;

  private:
    std::shared_ptr<detail::process_state> state_;
};

} // namespace warden
