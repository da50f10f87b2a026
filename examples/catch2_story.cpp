// The service whose install.sh is missing, as a Catch2 test. It fails on purpose, in
// milliseconds, at the spawn_process line, with the script's own error.
#define CATCH_CONFIG_MAIN
#include <warden/catch2.hpp>

#include "service_story.hpp"

using namespace std::chrono_literals;

TEST_CASE_METHOD(warden::catch2::fixture, "service starts") {
    story::service_dir service;
    sup.spawn_process({.argv = {"./start.sh"}, .cwd = service.path, .name = "service"});
    sup.wait_until([&] { return service.ready(); }, 60s);
}
