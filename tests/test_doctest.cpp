#include <warden/doctest.hpp>

#include <fstream>
#include <string>

#include "helpers.hpp"

namespace {

warden_test::program_result run_case(const std::string& name) {
    return warden_test::run_program(std::string(WARDEN_TEST_PROGRAMS_DIR) +
                                    "/warden_doctest_program --no-colors -tc=\"" + name + "\"");
}

// The line of tests/programs/doctest_program.cpp that carries `marker`.
unsigned line_of(const std::string& marker) {
    std::ifstream in(std::string(WARDEN_SOURCE_DIR) + "/tests/programs/doctest_program.cpp");
    std::string line;
    for (unsigned n = 1; std::getline(in, line); ++n)
        if (line.find("// " + marker) != std::string::npos)
            return n;
    return 0;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("a passing fixture test passes") {
    auto r = run_case("passes");
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "Status: SUCCESS!"));
}

TEST_CASE("the fixture joins at the end of the body and reports at the spawn's line") {
    auto r = run_case("child fails after the body returned");
    INFO(r.output);
    CHECK(r.exit_code == 1);
    const auto spawn_line = "doctest_program.cpp:" + std::to_string(line_of("SPAWN_A"));
    CHECK(contains(r.output, spawn_line));
    CHECK(contains(r.output, "installer (thread) failed: install.sh: No such file or directory"));
    CHECK(contains(r.output, "in test \"child fails after the body returned\""));
}

TEST_CASE("a failure thrown into the body names the spawn line") {
    auto r = run_case("body waits and a child fails");
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.output, "service died"));
    CHECK(contains(r.output, "doctest_program.cpp:" + std::to_string(line_of("SPAWN_B"))));
}

TEST_CASE("an unobserved failure ends the binary after the grace instead of hanging") {
    auto r = run_case("body blocked where warden cannot reach");
    INFO(r.output);
    CHECK(r.exit_code == warden::doctest::unobserved_exit_code);
    CHECK(contains(r.output, "did not observe it within 200 ms"));
    CHECK(contains(r.output, "lost (thread) failed: unobserved failure"));
    CHECK(contains(r.output, "doctest_program.cpp:" + std::to_string(line_of("SPAWN_C"))));
}

TEST_CASE("a join timeout at the end of the body fails the test at the spawn's line") {
    auto r = run_case("a child outlives the join deadline");
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.output, "sleeper (thread) running for"));
    CHECK(contains(r.output, "doctest_program.cpp:" + std::to_string(line_of("SPAWN_E"))));
}

TEST_CASE("REQUIRE failing inside a child fails that test without terminating") {
    auto r = run_case("REQUIRE fails inside a child");
    INFO(r.output);
    CHECK(r.signal == 0);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.output, "REQUIRE( 1 == 2 )"));
    CHECK(contains(r.output, "test cases: 1 | 0 passed | 1 failed"));
}

TEST_CASE("CHECK failing inside a child counts in the test") {
    auto r = run_case("CHECK fails inside a child");
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.output, "CHECK( 3 == 4 )"));
    CHECK(contains(r.output, "1 failed"));
}

TEST_CASE("WARDEN_TEST_CASE cancels the body's pending co_await when a child fails") {
    auto r = run_case("coroutine body is cancelled when a child fails");
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.output, "coroutine child failed"));
    CHECK_FALSE(contains(r.output, "was not cancelled"));
}

TEST_CASE("WARDEN_TEST_CASE passes when its children do") {
    auto r = run_case("coroutine body passes");
    INFO(r.output);
    CHECK(r.exit_code == 0);
}
