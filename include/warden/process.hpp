#pragma once

#include <chrono>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include <warden/task.hpp>

namespace warden {

namespace detail {
class process_state;
}

// A supervised subprocess (spawn_process) or forked child (spawn_forked). Owned by its
// supervisor: the reference stays valid until the supervisor is destroyed.
class process {
  public:
    explicit process(std::shared_ptr<detail::process_state> state);
    ~process();
    process(const process&) = delete;
    process& operator=(const process&) = delete;

    int pid() const noexcept;
    const std::string& name() const noexcept;
    bool done() const noexcept;

    // The first line of stdout or stderr matching `pattern`. Throws the process's own
    // failure at once if it ends first, and timeout_error (with the output tail) at `timeout`.
    boost::asio::awaitable<std::string> wait_for_line(std::regex pattern,
                                                      std::chrono::steady_clock::duration timeout);
    // The same, blocking the calling thread (for tests without coroutines).
    std::string wait_for_line_blocking(std::regex pattern,
                                       std::chrono::steady_clock::duration timeout);

    // The last output_tail lines of stdout and stderr, oldest first.
    std::vector<std::string> output_tail() const;
    // SIGTERM, then SIGKILL after the supervisor's cancel_grace. Not a failure.
    void terminate();
    // The process as a task: completes when it has been reaped.
    task<void> as_task() const;

  private:
    std::shared_ptr<detail::process_state> state_;
};

} // namespace warden
