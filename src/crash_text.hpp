#pragma once

#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "stack.hpp"

namespace warden::detail {

// A crash stack that is symbolised when it is first read (process_crashed::what(),
// crash_stack()), and the message that ends with it. Copies of one exception share it. Made
// without a lock and published under one (two readers at once may both make it; the first
// is kept): a reader holding a lock while it symbolises would wait for the symbolising
// thread, which may be reading this very text for a failure's log line.
class crash_text {
  public:
    explicit crash_text(std::string symbolised)
        : stack_(std::move(symbolised))
        , symbolised_(true) {}
    explicit crash_text(std::vector<const void*> frames)
        : frames_(std::move(frames))
        , symbolised_(frames_.empty()) {}

    // Published strings are never written again, so the references stay valid and unchanging.
    const std::string& stack() noexcept {
        {
            std::lock_guard lock(mutex_);
            if (symbolised_)
                return stack_;
        }
        std::string text;
        try {
            text = symbolise_frames(frames_); // frames_ is not written after construction
        } catch (const std::exception& e) {
            text = std::string("(the crash stack could not be symbolised: ") + e.what() + ")";
        }
        std::lock_guard lock(mutex_);
        if (!symbolised_) {
            stack_ = std::move(text);
            symbolised_ = true;
        }
        return stack_;
    }

    // `head` is the message without the stack, the same at every call; empty if out of memory.
    const std::string& message(const char* head) noexcept {
        const std::string& s = stack();
        {
            std::lock_guard lock(mutex_);
            if (written_)
                return message_;
        }
        std::string text;
        try {
            text = s.empty() ? std::string(head) : std::string(head) + "\n  crash stack:\n" + s;
        } catch (...) {
            return empty_;
        }
        std::lock_guard lock(mutex_);
        if (!written_) {
            message_ = std::move(text);
            written_ = true;
        }
        return message_;
    }

  private:
    const std::vector<const void*> frames_;
    std::mutex mutex_;
    std::string stack_;
    bool symbolised_;
    std::string message_;
    bool written_ = false;
    const std::string empty_;
};

} // namespace warden::detail
