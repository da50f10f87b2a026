#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <warden/detail/function.hpp>
#include <warden/report.hpp>

namespace warden::detail {

// The running test's name (set_current_test), shared by every origin recorded in it; null
// outside a test.
std::shared_ptr<const std::string> current_test_shared();

// The environment variable that tells a spawned program where it was spawned from.
inline constexpr std::string_view origin_variable = "WARDEN_ORIGIN";
// Longest value warden gives it: a long chain is cut in its middle.
inline constexpr std::size_t max_origin_value_size = 4096;

// This process's WARDEN_ORIGIN, read from the environment at the first call (any thread);
// empty if unset. The reference stays valid for the life of the process.
const std::string& outer_origin();
// Makes `value` this process's outer origin: for a forked child, whose copy of its parent's
// is stale. The old value is never freed, so references to it stay valid.
void set_outer_origin(std::string value);
// The WARDEN_ORIGIN value for a child spawned at `o` (whose `outer` is this process's): one
// line, `test "<name>" at <file>:<line>, by child <parent>, supervisor <name>, pid <pid>`
// (test and child when known), then ` <- ` and `o.outer` if any; control characters become
// blanks, and past max_origin_value_size the middle is cut out and replaced by "...".
std::string origin_value(const origin& o);

std::string first_line(const failure_report& report);
// "spawned at file:line in f", "in test ...", "by child ...", "supervisor ..." lines.
std::string describe_origin(const origin& o, std::string_view indent);

} // namespace warden::detail
