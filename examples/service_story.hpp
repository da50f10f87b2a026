#pragma once

// The story of demo.cpp for the test-framework examples (doctest_story.cpp, gtest_story.cpp,
// catch2_story.cpp): a service started through a shell script whose install.sh nobody wrote.

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

namespace story {

// start.sh runs install.sh, then would start the service and mark it ready. Removed with the
// object.
struct service_dir {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("warden-story-" + std::to_string(::getpid()));
    service_dir() {
        std::filesystem::create_directories(path);
        std::ofstream(path / "start.sh") << "#!/bin/sh\n"
                                            "set -e\n"
                                            "./install.sh\n"
                                            "touch service.ready\n"
                                            "exec sleep 1000\n";
        std::filesystem::permissions(path / "start.sh", std::filesystem::perms::owner_all);
    }
    ~service_dir() { std::filesystem::remove_all(path); }
    bool ready() const { return std::filesystem::exists(path / "service.ready"); }
};

} // namespace story
