#pragma once

// A test program's own stderr, read back. The dump signal's dump is written by warden's own
// thread some time after the signal: a program that must see it reads what it writes to its
// stderr, through a pipe, up to the dump's last line.

#include <stdexcept>
#include <string>

#include <poll.h>
#include <unistd.h>

namespace warden_test {

class captured_stderr {
  public:
    // From here on, stderr goes into a pipe.
    captured_stderr() {
        int ends[2];
        if (::pipe(ends) != 0)
            throw std::runtime_error("captured_stderr: pipe failed");
        read_end_ = ends[0];
        real_stderr_ = ::dup(STDERR_FILENO);
        ::dup2(ends[1], STDERR_FILENO);
        ::close(ends[1]);
    }
    captured_stderr(const captured_stderr&) = delete;
    captured_stderr& operator=(const captured_stderr&) = delete;
    ~captured_stderr() { restore(); }

    // What was written up to the dump's last line, then stderr is the real one again. A dump
    // that never comes ends the read after 10 s: the caller's check fails instead of hanging.
    std::string read_dump() {
        std::string text;
        char buffer[4096];
        while (text.find("warden: end of dump\n") == std::string::npos) {
            pollfd ready{read_end_, POLLIN, 0};
            if (::poll(&ready, 1, 10'000) != 1)
                break;
            const ssize_t n = ::read(read_end_, buffer, sizeof buffer);
            if (n <= 0)
                break;
            text.append(buffer, static_cast<std::size_t>(n));
        }
        restore();
        return text;
    }

  private:
    void restore() noexcept {
        if (real_stderr_ < 0)
            return;
        ::dup2(real_stderr_, STDERR_FILENO);
        ::close(real_stderr_);
        ::close(read_end_);
        real_stderr_ = -1;
    }

    int read_end_ = -1;
    int real_stderr_ = -1;
};

} // namespace warden_test
