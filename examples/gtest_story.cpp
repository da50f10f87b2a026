// The service whose install.sh is missing, as a GoogleTest test. It fails on purpose, in
// milliseconds, at the spawn_process line, with the script's own error.
#include <warden/gtest.hpp>

#include "service_story.hpp"

using namespace std::chrono_literals;

struct Service : warden::gtest::fixture {};

TEST_F(Service, Starts) {
    story::service_dir service;
    sup.spawn_process({.argv = {"./start.sh"}, .cwd = service.path, .name = "service"});
    sup.wait_until([&] { return service.ready(); }, 60s);
}
