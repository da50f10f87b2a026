// The story from the talk: a test starts a service through a shell script and waits up to a
// minute for it to say "started". The script's install.sh is missing. Without a supervisor
// the test sits out the whole minute and reports a timeout; with warden it fails as soon as
// the script dies, with the script's own error in the report.
//
// The demo exits 0 after showing the report: failing is what it demonstrates.

#include <warden/warden.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <boost/asio/awaitable.hpp>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// start.sh runs install.sh, which nobody wrote, then would start the service.
fs::path make_service_dir() {
    const fs::path dir = fs::temp_directory_path() / ("warden-demo-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "start.sh") << "#!/bin/bash\n"
                                       "set -e\n"
                                       "echo \"preparing the service in $PWD\"\n"
                                       "./install.sh\n"
                                       "echo \"service started\"\n"
                                       "exec sleep 1000\n";
    fs::permissions(dir / "start.sh", fs::perms::owner_all);
    return dir;
}

} // namespace

int main() {
    warden::set_current_test("service starts");
    const fs::path dir = make_service_dir();
    const auto began = std::chrono::steady_clock::now();
    try {
        warden::supervisor sup({.name = "demo"});
        auto& service = sup.spawn_process({.argv = {"./start.sh"}, .cwd = dir, .name = "service"});
        sup.spawn([&service]() -> asio::awaitable<void> {
            // The string form: a std::regex temporary inside co_await trips a g++ 12 bug.
            co_await service.wait_for_line("started", 60s);
            std::puts("the service started (it should not have)");
        });
        sup.wait();
        std::puts("no failure: the demo did not go as planned");
    } catch (...) {
        const auto took = std::chrono::steady_clock::now() - began;
        if (const auto* report = warden::report_for(std::current_exception()))
            std::printf("%s\n", report->to_string().c_str());
        std::printf("failed after %lld ms, where the wait allowed 60 s\n",
                    static_cast<long long>(
                        std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
    }
    fs::remove_all(dir);
    return 0;
}
