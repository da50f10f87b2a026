// A program that uses warden itself, run by test_process.cpp through spawn_process: it prints
// the WARDEN_ORIGIN its own children get (a chain back to the test), then the report of a
// thread child that fails (which names the test that started this program), and exits 1.

#include <warden/process.hpp>
#include <warden/report.hpp>
#include <warden/supervisor.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

int main() {
    {
        warden::supervisor sup{{.name = "origin program"}};
        auto& p = sup.spawn_process({.argv = {"sh", "-c", "echo \"chain: $WARDEN_ORIGIN\""}});
        sup.wait();
        for (const auto& line : p.output_tail())
            std::printf("%s\n", line.c_str());
    }
    warden::supervisor sup{{.name = "origin program", .capture = warden::capture::location}};
    sup.spawn([] { throw std::runtime_error("failed in a grandchild"); }, {.name = "grandchild"});
    try {
        sup.wait();
    } catch (...) {
        if (const auto* report = warden::report_for(std::current_exception()))
            std::printf("%s", report->to_string().c_str());
        return 1;
    }
    return 0;
}
