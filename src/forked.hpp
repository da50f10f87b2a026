#pragma once

// For code running inside a spawn_forked child. Private to src/ (and its tests).

namespace warden::detail {

// The write end of the pipe that carries the forked child's failure message to the parent;
// -1 outside a forked child. Tests use it to send the parent bytes that are not a message.
int forked_failure_fd() noexcept;

} // namespace warden::detail
