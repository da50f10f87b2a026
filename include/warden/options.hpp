#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace warden {

// What happens to the other children when one fails.
enum class policy {
    fail_fast, // the first failure cancels every sibling and is what join throws
    collect,   // children fail independently; join throws failure_group at the end
};

// What a spawn records about where it was called from.
enum class capture {
    location,   // std::source_location only
    stacktrace, // plus a raw stack, symbolised only when a report is built
};

enum class child_kind { coroutine, thread, process, forked };

struct supervisor_options {
    std::string name = "supervisor";
    std::size_t threads = 0; // 0: std::thread::hardware_concurrency()
    warden::policy policy = policy::fail_fast;
    warden::capture capture = capture::stacktrace;
    std::chrono::milliseconds cancel_grace{2000};
};

struct spawn_options {
    std::string name; // empty: "<kind>#<n>"
};

struct process_options {
    std::vector<std::string> argv; // argv[0] is looked up in PATH unless it has a slash
    std::optional<std::filesystem::path> cwd;
    std::optional<std::map<std::string, std::string>> env; // given: replaces the environment
    std::string name;                                      // empty: argv[0]'s file name + "#<n>"
    std::size_t output_tail = 64;                          // last lines of stdout+stderr kept
};

} // namespace warden
