#pragma once

// How a forked child tells its parent which exception escaped it. Private to src/.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace warden::detail {

struct remote_failure {
    std::string type_name;
    std::string what;
    std::string stacktrace;
};

// Wire format, version 1. Integers are unsigned 32-bit little-endian.
//
//   offset  size  content
//   0       4     magic "WRDF"
//   4       1     version, 1
//   5       4     payload length P
//   9       P     payload: type_name, what, stacktrace, in that order, each as a u32 length L
//                 followed by L bytes (no terminator, any byte values)
//
// The three fields must use up the payload exactly and nothing may follow it, so every message
// has exactly one encoding. The magic and version are there because the parent reads whatever
// the child managed to write before dying: they let it tell a cut-off or scribbled pipe from a
// real message.
inline constexpr std::size_t max_remote_failure_size = std::size_t{1} << 20;

// The result is never larger than max_remote_failure_size: when the fields do not fit, the
// longest ones are cut (ending in a "[warden: N bytes truncated]" marker) and the short ones are
// kept whole, so a huge what() cannot push out the type name or the stack trace.
std::string encode_remote_failure(const remote_failure& failure);

// Exactly one of the two is set: `failure` on success, otherwise `error` says what was wrong
// with the bytes, in words fit for a report.
struct decoded_remote_failure {
    std::optional<remote_failure> failure;
    std::string error;
};

// Accepts only what encode_remote_failure produces. Never reads outside `bytes` and never
// allocates for a field more than the bytes actually present; if memory runs out anyway the
// error is "out of memory" rather than an exception.
decoded_remote_failure decode_remote_failure(std::string_view bytes) noexcept;

} // namespace warden::detail
