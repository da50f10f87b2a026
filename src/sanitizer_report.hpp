#pragma once

// Finding a sanitizer report (AddressSanitizer, LeakSanitizer, ThreadSanitizer,
// MemorySanitizer, UndefinedBehaviorSanitizer) in a child's output, one line at a time.
// Private to src/.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace warden::detail {

// One frame of a report's stack, as the scanner reads it.
struct sanitizer_frame {
    std::string_view function; // empty when unknown
    std::string_view location; // "file:line[:col]", "(module+0xoffset)" or empty
};

// Feeds on the output lines of one process and remembers its first sanitizer report as
// "<sanitizer>: <kind> in <function> at <file:line>", naming the first frame of the report's
// first stack that lies outside the sanitizer runtime (its interceptors, allocator and
// libsanitizer/compiler-rt sources). Later reports are ignored.
//
// A line counts as a report only in the shape the runtimes print it, at the start of the line
// once colour escapes are stripped:
//   ==<pid>==ERROR: <Name>Sanitizer: <kind> ...           ASan, LSan, UBSan's SEGV, ...
//   [==<pid>==]WARNING: ThreadSanitizer: <kind> (pid=N)   TSan
//   ==<pid>==WARNING: MemorySanitizer: <kind>             MSan
//   <file>:<line>[:<col>]: runtime error: <kind>          UBSan
//   SUMMARY: <Name>Sanitizer: <kind> <file:line> in <fn>  when no header came before it
// so a log line that merely mentions a sanitizer is not one.
//
//   phase        | on a line that is                    | goes to
//   -------------+--------------------------------------+-------------------------------
//   searching    | a header                             | before_stack
//                | a SUMMARY line (the header was lost) | done, with SUMMARY's frame
//   before_stack | a frame outside the runtime          | done, with that frame
//                | a runtime frame                      | in_stack
//                | one too many of anything else        | after_stack
//   in_stack     | a frame outside the runtime          | done, with that frame
//                | not a frame                          | after_stack
//   after_stack  | a SUMMARY line                       | done, with its frame if it names
//                |                                      | one outside the runtime
//   done         | anything                             | done
// (before_stack and in_stack also end at a SUMMARY line, as after_stack does.)
//
// Bounded: each line costs at most about max_examined_size bytes of work however long it is
// (the middle of a longer line is never looked at), and the report keeps three fields of at
// most max_field_size bytes.
class sanitizer_scanner {
  public:
    // One line of output, without its newline (a trailing "\r" or "\n" is ignored).
    void feed_line(std::string_view line);

    bool found() const noexcept { return phase_ != phase::searching; }
    // Found, and no later line can change the summary.
    bool complete() const noexcept { return phase_ == phase::done; }
    // Empty until found().
    std::string summary() const;
    // "AddressSanitizer", "LeakSanitizer", ...; empty until found().
    std::string_view sanitizer() const noexcept { return sanitizer_; }

    static constexpr std::size_t max_examined_size = 16 * 1024;
    static constexpr std::size_t max_field_size = 512;

  private:
    enum class phase : unsigned char { searching, before_stack, in_stack, after_stack, done };

    void on_header_line(std::string_view line);
    void on_report_line(std::string_view line);
    // Keeps `frame` unless it lies in the sanitizer runtime; true if it was kept.
    bool take_frame(const sanitizer_frame& frame);

    phase phase_ = phase::searching;
    std::string_view sanitizer_; // one of the static names, e.g. "AddressSanitizer"
    std::string kind_;           // "heap-use-after-free", "data race", ...
    std::string function_;       // of the first frame outside the runtime; may be empty
    std::string location_;       // "file:line[:col]" or "(module+0xoffset)"
    std::size_t lines_before_stack_ = 0;
    std::size_t max_lines_before_stack_ = 0;
};

// The summary of the first report in `lines`, empty if there is none.
std::string find_sanitizer_report(std::span<const std::string> lines);

} // namespace warden::detail
