// The scenarios of scenarios.hpp as Catch2 tests (failing on purpose), run one by one from
// tests/test_frameworks.cpp.

#define CATCH_CONFIG_MAIN
// Wide enough that no report line is wrapped: test_frameworks.cpp looks for whole lines.
#define CATCH_CONFIG_CONSOLE_WIDTH 250
#include <warden/catch2.hpp>

#include "scenarios.hpp"

using warden::catch2::fixture;

TEST_CASE_METHOD(fixture, "passes") {
    CHECK(scenario::passes(sup) == 1);
}
TEST_CASE_METHOD(fixture, "child fails after the body returned") {
    scenario::child_fails_after_the_body_returned(sup);
}
TEST_CASE_METHOD(fixture, "body waits and a child fails") {
    scenario::body_waits_and_a_child_fails(sup);
}
TEST_CASE_METHOD(fixture, "body blocked where warden cannot reach") {
    scenario::body_blocked_where_warden_cannot_reach(sup);
}
TEST_CASE_METHOD(fixture, "a child outlives the join deadline") {
    scenario::a_child_outlives_the_join_deadline(sup);
}
WARDEN_CATCH_TEST_CASE("coroutine body is cancelled when a child fails") {
    co_await scenario::coroutine_body_is_cancelled_when_a_child_fails(sup);
}
WARDEN_CATCH_TEST_CASE("coroutine body passes") {
    const int value = co_await scenario::coroutine_body_passes(sup);
    CHECK(value == 5);
}
TEST_CASE_METHOD(fixture, "leaves a process running") {
    scenario::leaves_a_process_running();
}
TEST_CASE_METHOD(fixture, "leaves a process unreaped") {
    scenario::leaves_a_process_unreaped();
}
TEST_CASE_METHOD(fixture, "leaves a thread running") {
    scenario::leaves_a_thread_running();
}
TEST_CASE_METHOD(fixture, "leaves a thread running under leak policy fail") {
    thread_leaks = warden::leak_policy::fail;
    scenario::leaves_a_thread_running();
}
TEST_CASE_METHOD(fixture, "leaves a process and a thread running under leak policy off") {
    process_leaks = warden::leak_policy::off;
    thread_leaks = warden::leak_policy::off;
    scenario::leaves_a_process_running();
    scenario::leaves_a_thread_running();
}
TEST_CASE_METHOD(fixture, "dumps where its child is on sigquit") {
    scenario::dumps_where_its_child_is_on_sigquit(sup);
}
TEST_CASE_METHOD(fixture, "starts only threads that are no leak") {
    thread_leaks = warden::leak_policy::fail;
    scenario::starts_only_threads_that_are_no_leak(sup);
}
