// The scenarios of scenarios.hpp as doctest tests (failing on purpose), run one by one from
// tests/test_frameworks.cpp, plus doctest's own cases run from tests/test_doctest.cpp.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <warden/doctest.hpp>

#include "scenarios.hpp"

using warden::doctest::fixture;

TEST_CASE_FIXTURE(fixture, "passes") {
    CHECK(scenario::passes(sup) == 1);
}
TEST_CASE_FIXTURE(fixture, "child fails after the body returned") {
    scenario::child_fails_after_the_body_returned(sup);
}
TEST_CASE_FIXTURE(fixture, "body waits and a child fails") {
    scenario::body_waits_and_a_child_fails(sup);
}
TEST_CASE_FIXTURE(fixture, "body blocked where warden cannot reach") {
    scenario::body_blocked_where_warden_cannot_reach(sup);
}
TEST_CASE_FIXTURE(fixture, "a child outlives the join deadline") {
    scenario::a_child_outlives_the_join_deadline(sup);
}
WARDEN_TEST_CASE("coroutine body is cancelled when a child fails") {
    co_await scenario::coroutine_body_is_cancelled_when_a_child_fails(sup);
}
WARDEN_TEST_CASE("coroutine body passes") {
    const int value = co_await scenario::coroutine_body_passes(sup);
    CHECK(value == 5);
}
TEST_CASE_FIXTURE(fixture, "leaves a process running") {
    scenario::leaves_a_process_running();
}
TEST_CASE_FIXTURE(fixture, "leaves a process unreaped") {
    scenario::leaves_a_process_unreaped();
}
TEST_CASE_FIXTURE(fixture, "leaves a thread running") {
    scenario::leaves_a_thread_running();
}
TEST_CASE_FIXTURE(fixture, "leaves a thread running under leak policy fail") {
    thread_leaks = warden::leak_policy::fail;
    scenario::leaves_a_thread_running();
}
TEST_CASE_FIXTURE(fixture, "leaves a process and a thread running under leak policy off") {
    process_leaks = warden::leak_policy::off;
    thread_leaks = warden::leak_policy::off;
    scenario::leaves_a_process_running();
    scenario::leaves_a_thread_running();
}
TEST_CASE_FIXTURE(fixture, "dumps where its child is on sigquit") {
    scenario::dumps_where_its_child_is_on_sigquit(sup);
}
TEST_CASE_FIXTURE(fixture, "starts only threads that are no leak") {
    thread_leaks = warden::leak_policy::fail;
    scenario::starts_only_threads_that_are_no_leak(sup);
}

TEST_CASE_FIXTURE(fixture, "REQUIRE fails inside a child") {
    sup.spawn([] { REQUIRE(1 == 2); });
}
TEST_CASE_FIXTURE(fixture, "CHECK fails inside a child") {
    sup.spawn([] { CHECK(3 == 4); }).get();
}
