// The fixtures of all three framework adapters, held to the same list: each test below runs
// one case of tests/programs/<framework>_program.cpp (the scenarios of
// tests/programs/scenarios.hpp, failing on purpose) as a subprocess, for each framework, and
// checks its output, exit status and report file.
#include <warden/doctest.hpp>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "helpers.hpp"
#include "json_check.hpp"

namespace fs = std::filesystem;

namespace {

// A scenario's name, CamelCase as GoogleTest needs it, as the sentence doctest and Catch2 use.
std::string sentence(const std::string& key) {
    std::string out;
    for (char c : key) {
        if (std::isupper(static_cast<unsigned char>(c)) && !out.empty())
            out += ' ';
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

std::string program(const char* name) {
    return std::string(WARDEN_TEST_PROGRAMS_DIR) + "/" + name;
}

struct doctest_program {
    static std::string command(const std::string& key) {
        return program("warden_doctest_program") + " --no-colors -tc=\"" + sentence(key) + "\"";
    }
    static std::string test_name(const std::string& key) { return sentence(key); }
    // The exit status of a run whose one test failed.
    static bool failed(int exit_code) { return exit_code == 1; }
    // How the framework shows a failure at file:line.
    static std::string failure_at(unsigned line) {
        return "scenarios.hpp:" + std::to_string(line) + ": ERROR:";
    }
};

struct gtest_program {
    static std::string command(const std::string& key) {
        return program("warden_gtest_program") + " --gtest_color=no --gtest_filter=Scenarios." +
               key;
    }
    static std::string test_name(const std::string& key) { return "Scenarios." + key; }
    static bool failed(int exit_code) { return exit_code == 1; }
    static std::string failure_at(unsigned line) {
        return "scenarios.hpp:" + std::to_string(line) + ": Failure";
    }
};

struct catch2_program {
    static std::string command(const std::string& key) {
        return program("warden_catch2_program") + " --use-colour no \"" + sentence(key) + "\"";
    }
    static std::string test_name(const std::string& key) { return sentence(key); }
    // Catch2 2 exits with the number of failed assertions.
    static bool failed(int exit_code) {
        return exit_code >= 1 && exit_code != warden::fixtures::unobserved_exit_code;
    }
    static std::string failure_at(unsigned line) {
        return "scenarios.hpp:" + std::to_string(line) + ": FAILED:";
    }
};

// The line of tests/programs/scenarios.hpp that carries `marker`.
unsigned line_of(const std::string& marker) {
    std::ifstream in(std::string(WARDEN_SOURCE_DIR) + "/tests/programs/scenarios.hpp");
    std::string line;
    for (unsigned n = 1; std::getline(in, line); ++n)
        if (line.find("// " + marker) != std::string::npos)
            return n;
    return 0;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// The number a scenario printed after `label` ("stray pid 1234").
std::string printed_id(const std::string& output, const std::string& label) {
    std::smatch match;
    if (std::regex_search(output, match, std::regex(label + " ([0-9]+)")))
        return match[1];
    return "(not printed)";
}

// A scratch directory for report files, removed at the end of the test.
struct report_dir {
    fs::path path = fs::temp_directory_path() /
                    ("warden-reports-" + std::to_string(::getpid()) + "-" + std::to_string(next()));
    report_dir() { fs::create_directories(path); }
    ~report_dir() { fs::remove_all(path); }
    static int next() {
        static int n = 0;
        return ++n;
    }
    std::vector<std::string> files() const {
        std::vector<std::string> texts;
        for (const auto& entry : fs::directory_iterator(path)) {
            std::ifstream in(entry.path());
            std::ostringstream text;
            text << in.rdbuf();
            texts.push_back(text.str());
        }
        return texts;
    }
};

template <class F>
warden_test::program_result run(const std::string& key, const std::string& environment = {}) {
    return warden_test::run_program(environment + " " + F::command(key));
}

} // namespace

TYPE_TO_STRING(doctest_program);
TYPE_TO_STRING(gtest_program);
TYPE_TO_STRING(catch2_program);

#define WARDEN_TEST_PROGRAMS doctest_program WARDEN_TEST_GTEST WARDEN_TEST_CATCH2
#ifdef WARDEN_TEST_HAVE_GTEST
#define WARDEN_TEST_GTEST , gtest_program
#else
#define WARDEN_TEST_GTEST
#endif
#ifdef WARDEN_TEST_HAVE_CATCH2
#define WARDEN_TEST_CATCH2 , catch2_program
#else
#define WARDEN_TEST_CATCH2
#endif

TEST_CASE_TEMPLATE("a passing fixture test passes", F, WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("Passes");
    INFO(r.output);
    CHECK(r.exit_code == 0);
}

TEST_CASE_TEMPLATE("the fixture joins when the body returns and fails the test at the spawn line",
                   F, WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("ChildFailsAfterTheBodyReturned");
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    CHECK(contains(r.output, F::failure_at(line_of("SPAWN_A"))));
    CHECK(contains(r.output, "installer (thread) failed: install.sh: No such file or directory"));
    CHECK(contains(r.output, "in test \"" + F::test_name("ChildFailsAfterTheBodyReturned") + "\""));
}

TEST_CASE_TEMPLATE("a failure thrown into the body names the spawn line", F, WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("BodyWaitsAndAChildFails");
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    CHECK(contains(r.output, "service died"));
    CHECK(contains(r.output, F::failure_at(line_of("SPAWN_B"))));
}

TEST_CASE_TEMPLATE("an unobserved failure ends the binary after the grace and writes its report", F,
                   WARDEN_TEST_PROGRAMS) {
    report_dir dir;
    auto r = run<F>("BodyBlockedWhereWardenCannotReach", "WARDEN_REPORT_DIR=" + dir.path.string());
    INFO(r.output);
    CHECK(r.exit_code == warden::fixtures::unobserved_exit_code);
    CHECK(contains(r.output, "did not observe it within 200 ms"));
    CHECK(contains(r.output, "lost (thread) failed: unobserved failure"));
    CHECK(contains(r.output, "scenarios.hpp:" + std::to_string(line_of("SPAWN_C"))));
    const auto files = dir.files();
    REQUIRE(files.size() == 1);
    CHECK(warden_test::is_valid_json(files[0]));
    CHECK(contains(files[0], "\"what\":\"unobserved failure\""));
}

TEST_CASE_TEMPLATE("a join timeout at the end of the body fails the test at the spawn line", F,
                   WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("AChildOutlivesTheJoinDeadline");
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    CHECK(contains(r.output, "sleeper (thread) running for"));
    CHECK(contains(r.output, F::failure_at(line_of("SPAWN_E"))));
}

TEST_CASE_TEMPLATE("a child failure cancels the coroutine body at its pending co_await", F,
                   WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("CoroutineBodyIsCancelledWhenAChildFails");
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    CHECK(contains(r.output, "coroutine child failed"));
    CHECK(contains(r.output, "the body's pending co_await ended: Operation canceled"));
    CHECK_FALSE(contains(r.output, "was not cancelled"));
    CHECK(contains(r.output, F::failure_at(line_of("SPAWN_D"))));
}

TEST_CASE_TEMPLATE("a coroutine body passes when its children do", F, WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("CoroutineBodyPasses");
    INFO(r.output);
    CHECK(r.exit_code == 0);
}

TEST_CASE_TEMPLATE("the leak check fails a test that left a child process running", F,
                   WARDEN_TEST_PROGRAMS) {
    report_dir dir;
    auto r = run<F>("LeavesAProcessRunning", "WARDEN_REPORT_DIR=" + dir.path.string());
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    const auto pid = printed_id(r.output, "stray pid");
    CHECK(contains(r.output, "left a child process it started outside warden: child process pid " +
                                 pid + ": sleep 1000"));
    const auto files = dir.files();
    REQUIRE(files.size() == 1);
    CHECK(warden_test::is_valid_json(files[0]));
    CHECK(
        contains(files[0], "\"leak\":\"process\",\"pid\":" + pid + ",\"command\":\"sleep 1000\""));
}

TEST_CASE_TEMPLATE("the leak check fails a test that left a child process unreaped", F,
                   WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("LeavesAProcessUnreaped");
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    CHECK(contains(r.output, "child process pid " + printed_id(r.output, "stray pid") + ": "));
}

TEST_CASE_TEMPLATE("the leak check warns of a thread left running by default", F,
                   WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("LeavesAThreadRunning");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "left a thread running: thread tid " +
                                 printed_id(r.output, "stray tid") + " \"stray worker\""));
    // Its live stack: where it waits, and the test's function that started it.
#if defined(__SANITIZE_THREAD__)
    // TSan holds the signal back while a thread sleeps in its wrapper: then it says so.
    CHECK((contains(r.output, "leaves_a_thread_running") || contains(r.output, "did not answer")));
#else
    CHECK(contains(r.output, "leaves_a_thread_running"));
#endif
}

TEST_CASE_TEMPLATE("the leak check fails a test that left a thread running under policy fail", F,
                   WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("LeavesAThreadRunningUnderLeakPolicyFail");
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    CHECK(contains(r.output, "left a thread running: thread tid " +
                                 printed_id(r.output, "stray tid") + " \"stray worker\""));
}

TEST_CASE_TEMPLATE("leak policy off reports neither a process nor a thread left running", F,
                   WARDEN_TEST_PROGRAMS) {
    report_dir dir;
    auto r = run<F>("LeavesAProcessAndAThreadRunningUnderLeakPolicyOff",
                    "WARDEN_REPORT_DIR=" + dir.path.string());
    INFO(r.output);
    CHECK(r.exit_code == 0);
    // Both were left running: the check was off, not blind.
    CHECK(printed_id(r.output, "stray pid") != "(not printed)");
    CHECK(printed_id(r.output, "stray tid") != "(not printed)");
    CHECK_FALSE(contains(r.output, "left a"));
    CHECK(dir.files().empty());
}

TEST_CASE_TEMPLATE("threads from before the test and warden's and libraries' own are no leak", F,
                   WARDEN_TEST_PROGRAMS) {
    auto r = run<F>("StartsOnlyThreadsThatAreNoLeak");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "reported")); // the report was symbolised: that thread is running
    CHECK_FALSE(contains(r.output, "left a thread"));
}

TEST_CASE_TEMPLATE("a failing test writes one JSON report file where the environment says", F,
                   WARDEN_TEST_PROGRAMS) {
    const std::string key = "ChildFailsAfterTheBodyReturned";
    for (const char* variable : {"WARDEN_REPORT_DIR", "TEST_UNDECLARED_OUTPUTS_DIR"}) {
        CAPTURE(variable);
        report_dir dir;
        auto r = run<F>(key, "env -u WARDEN_REPORT_DIR -u TEST_UNDECLARED_OUTPUTS_DIR " +
                                 std::string(variable) + "=" + dir.path.string());
        INFO(r.output);
        CHECK(F::failed(r.exit_code));
        const auto files = dir.files();
        REQUIRE(files.size() == 1);
        INFO(files[0]);
        CHECK(warden_test::is_valid_json(files[0]));
        CHECK(contains(files[0], "\"test\":\"" + F::test_name(key) + "\""));
        CHECK(contains(files[0], "\"child\":\"installer\",\"kind\":\"thread\""));
        CHECK(contains(files[0], "\"line\":" + std::to_string(line_of("SPAWN_A"))));
    }
}

TEST_CASE_TEMPLATE("WARDEN_REPORT_DIR wins over TEST_UNDECLARED_OUTPUTS_DIR when both are set", F,
                   WARDEN_TEST_PROGRAMS) {
    report_dir ours;
    report_dir bazels;
    auto r = run<F>("ChildFailsAfterTheBodyReturned",
                    "WARDEN_REPORT_DIR=" + ours.path.string() +
                        " TEST_UNDECLARED_OUTPUTS_DIR=" + bazels.path.string());
    INFO(r.output);
    CHECK(F::failed(r.exit_code));
    CHECK(ours.files().size() == 1);
    CHECK(bazels.files().empty());
}

TEST_CASE_TEMPLATE("a passing test writes no report file", F, WARDEN_TEST_PROGRAMS) {
    report_dir dir;
    auto r = run<F>("Passes", "WARDEN_REPORT_DIR=" + dir.path.string());
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(dir.files().empty());
}

TEST_CASE_TEMPLATE("the fixture installs the dump signal: SIGQUIT dumps where each child is and "
                   "the test carries on",
                   F, WARDEN_TEST_PROGRAMS) {
    const std::string key = "DumpsWhereItsChildIsOnSigquit";
    auto r = run<F>(key);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(contains(r.output, "warden: dump of pid "));
    CHECK(contains(r.output, "stuck until cancelled (thread) running for"));
    CHECK(contains(r.output, "in test \"" + F::test_name(key) + "\""));
    CHECK(contains(r.output, "warden: end of dump"));
    CHECK(contains(r.output, "carried on after the dump"));
}
