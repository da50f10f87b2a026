// The scenarios of scenarios.hpp as GoogleTest tests (failing on purpose), run one by one from
// tests/test_frameworks.cpp.

#include <warden/gtest.hpp>

#include "scenarios.hpp"

struct Scenarios : warden::gtest::fixture {};

TEST_F(Scenarios, Passes) {
    EXPECT_EQ(scenario::passes(sup), 1);
}
TEST_F(Scenarios, ChildFailsAfterTheBodyReturned) {
    scenario::child_fails_after_the_body_returned(sup);
}
TEST_F(Scenarios, BodyWaitsAndAChildFails) {
    scenario::body_waits_and_a_child_fails(sup);
}
TEST_F(Scenarios, BodyBlockedWhereWardenCannotReach) {
    scenario::body_blocked_where_warden_cannot_reach(sup);
}
TEST_F(Scenarios, AChildOutlivesTheJoinDeadline) {
    scenario::a_child_outlives_the_join_deadline(sup);
}
WARDEN_TEST(Scenarios, CoroutineBodyIsCancelledWhenAChildFails) {
    co_await scenario::coroutine_body_is_cancelled_when_a_child_fails(sup);
}
WARDEN_TEST(Scenarios, CoroutineBodyPasses) {
    const int value = co_await scenario::coroutine_body_passes(sup);
    EXPECT_EQ(value, 5);
}
TEST_F(Scenarios, LeavesAProcessRunning) {
    scenario::leaves_a_process_running();
}
TEST_F(Scenarios, LeavesAProcessUnreaped) {
    scenario::leaves_a_process_unreaped();
}
TEST_F(Scenarios, LeavesAThreadRunning) {
    scenario::leaves_a_thread_running();
}
TEST_F(Scenarios, LeavesAThreadRunningUnderLeakPolicyFail) {
    thread_leaks = warden::leak_policy::fail;
    scenario::leaves_a_thread_running();
}
TEST_F(Scenarios, LeavesAProcessAndAThreadRunningUnderLeakPolicyOff) {
    process_leaks = warden::leak_policy::off;
    thread_leaks = warden::leak_policy::off;
    scenario::leaves_a_process_running();
    scenario::leaves_a_thread_running();
}
TEST_F(Scenarios, DumpsWhereItsChildIsOnSigquit) {
    scenario::dumps_where_its_child_is_on_sigquit(sup);
}
TEST_F(Scenarios, StartsOnlyThreadsThatAreNoLeak) {
    thread_leaks = warden::leak_policy::fail;
    scenario::starts_only_threads_that_are_no_leak(sup);
}
