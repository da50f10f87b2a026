#include <warden/errors.hpp>

#include <csignal>

#include <doctest/doctest.h>

TEST_CASE("signal_name gives the SIG name") {
    CHECK(warden::signal_name(SIGSEGV) == "SIGSEGV");
    CHECK(warden::signal_name(SIGKILL) == "SIGKILL");
    CHECK(warden::signal_name(SIGABRT) == "SIGABRT");
    CHECK(warden::signal_name(12345) == "signal 12345");
}

TEST_CASE("process errors carry argv, pid, status and the output tail") {
    warden::process_error e({"sh", "-c", "exit 3"}, 77, 3, {"line one", "line two"});
    CHECK(e.exit_code() == 3);
    CHECK(e.pid() == 77);
    std::string what = e.what();
    CHECK(what.find("`sh -c exit 3` (pid 77) exited with code 3") != std::string::npos);
    CHECK(what.find("line two") != std::string::npos);

    warden::process_crashed c({"./svc"}, 5, SIGSEGV, true, {}, "0# f at a.cpp:1");
    CHECK(c.signal_name() == "SIGSEGV");
    CHECK(c.core_dumped());
    CHECK(std::string(c.what()).find("killed by SIGSEGV (11), core dumped") != std::string::npos);
}

TEST_CASE("spawn_error names the argument and the errno text") {
    warden::spawn_error e(std::make_error_code(std::errc::no_such_file_or_directory), "argv[0]",
                          "./install.sh not found");
    std::string what = e.what();
    CHECK(what.find("argv[0]") != std::string::npos);
    CHECK(what.find("No such file or directory") != std::string::npos);
    CHECK(e.code() == std::errc::no_such_file_or_directory);
}

TEST_CASE("remote_error carries type, message and the child's stack") {
    warden::remote_error e("std::runtime_error", "in child", "0# worker at w.cpp:3");
    CHECK(e.type_name() == "std::runtime_error");
    CHECK(e.remote_what() == "in child");
    CHECK(std::string(e.what()).find("worker at w.cpp:3") != std::string::npos);
}

TEST_CASE("a sanitizer summary comes first in what() and is kept by copies") {
    const std::string summary = "AddressSanitizer: heap-use-after-free in f() at a.cpp:3";
    const warden::process_error e({"./svc"}, 9, 0, {"out"}, summary);
    CHECK(e.sanitizer() == summary);
    CHECK(std::string(e.what()).starts_with(summary + "; process `./svc` (pid 9) exited with "
                                                      "code 0"));
    const warden::process_error copy = e;
    CHECK(copy.sanitizer() == summary);

    const warden::process_crashed c({"./svc"}, 9, SIGABRT, false, {}, "0# f at a.cpp:3", summary);
    CHECK(c.sanitizer() == summary);
    const std::string what = c.what();
    CHECK(what.starts_with(summary + "; process `./svc` (pid 9) killed by SIGABRT"));
    CHECK(what.find("crash stack:\n0# f at a.cpp:3") != std::string::npos);

    const warden::remote_error r("std::logic_error", "bad", "", summary);
    CHECK(r.sanitizer() == summary);
    CHECK(std::string(r.what()) == summary + "; std::logic_error: bad");

    CHECK(warden::process_error({"x"}, 1, 2, {}).sanitizer().empty());
    CHECK(std::string(warden::process_error({"x"}, 1, 2, {}).what()).starts_with("process `x`"));
}
