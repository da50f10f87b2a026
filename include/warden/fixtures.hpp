#pragma once

// What the test-framework fixtures (<warden/doctest.hpp>, <warden/gtest.hpp>,
// <warden/catch2.hpp>) share: their settings and the leak check's policy. Each adapter names
// these in its own namespace too (warden::doctest::unobserved_grace is this one).

#include <chrono>

namespace warden {

// What the leak check at the end of a fixture test does with what the test left behind.
enum class leak_policy {
    fail, // the test fails, naming each leak
    warn, // the leak is printed; the test's verdict does not change
    off,  // not looked for
};

namespace fixtures {

// How long a child failure may go unobserved (the body is blocked where warden cannot
// interrupt it) before the test binary is ended. Set it before the test.
inline std::chrono::milliseconds unobserved_grace{1000};
// The deadline of the join the fixture does when the body returns.
inline std::chrono::milliseconds join_deadline{std::chrono::seconds(60)};
// Exit status of a binary ended by the unobserved-failure watchdog.
inline constexpr int unobserved_exit_code = 70;

// Defaults of each fixture's `process_leaks` and `thread_leaks` members: a child process the
// test started outside warden and left running or unreaped, a thread it left running.
inline leak_policy process_leaks = leak_policy::fail;
inline leak_policy thread_leaks = leak_policy::warn;

// Marks the calling thread as one a library keeps for the life of the process, so that no
// fixture's leak check reports it: for instance spdlog's workers, as
// `spdlog::init_thread_pool(8192, 1, [] { warden::fixtures::keep_this_thread(); })`.
void keep_this_thread();

} // namespace fixtures

} // namespace warden
