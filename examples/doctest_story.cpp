// The service whose install.sh is missing, as a doctest test. It fails on purpose, in
// milliseconds, at the spawn_process line, with the script's own error.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <warden/doctest.hpp>

#include "service_story.hpp"

using namespace std::chrono_literals;

TEST_CASE_FIXTURE(warden::doctest::fixture, "service starts") {
    story::service_dir service;
    sup.spawn_process({.argv = {"./start.sh"}, .cwd = service.path, .name = "service"});
    sup.wait_until([&] { return service.ready(); }, 60s);
}
