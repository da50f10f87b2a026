#include <warden/doctest.hpp>

#include <string>

#include "helpers.hpp"

// What only doctest has: its assertions inside a child. What all three fixtures share is
// test_frameworks.cpp's.

namespace {

warden_test::program_result run_case(const std::string& name) {
    return warden_test::run_program(std::string(WARDEN_TEST_PROGRAMS_DIR) +
                                    "/warden_doctest_program --no-colors -tc=\"" + name + "\"");
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

} // namespace

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

TEST_CASE("the doctest names of the shared settings are the fixtures' own") {
    CHECK(&warden::doctest::unobserved_grace == &warden::fixtures::unobserved_grace);
    CHECK(&warden::doctest::join_deadline == &warden::fixtures::join_deadline);
}
