// libFuzzer target for the sanitizer-report scanner. Build with
//   clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -g -Isrc \
//       tests/fuzz/fuzz_sanitizer_report.cpp src/sanitizer_report.cpp
// and seed it with tests/fuzz/sanitizer_corpus/ (real reports of g++ 12 and clang 14 runtimes).

#include "sanitizer_report.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using warden::detail::sanitizer_scanner;

// Sanitizer name, kind, function and location, the last three capped, and the words between.
constexpr std::size_t max_summary_size = 3 * sanitizer_scanner::max_field_size + 64;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);
    std::vector<std::string> lines;
    while (!bytes.empty()) {
        const auto end = bytes.find('\n');
        lines.emplace_back(bytes.substr(0, end));
        if (end == std::string_view::npos)
            break;
        bytes.remove_prefix(end + 1);
    }

    sanitizer_scanner scanner;
    sanitizer_scanner coloured;
    for (const auto& line : lines) {
        scanner.feed_line(line);
        coloured.feed_line("\x1b[1;31m" + line);
    }
    const auto summary = scanner.summary();
    if (scanner.found() == summary.empty() || (scanner.complete() && !scanner.found()))
        std::abort();
    if (summary.size() > max_summary_size)
        std::abort();
    if (warden::detail::find_sanitizer_report(lines) != summary)
        std::abort();
    // Colour changes nothing, as long as it does not move where a long line is cut.
    const bool all_short = std::all_of(lines.begin(), lines.end(), [](const std::string& line) {
        return line.size() + 8 <= sanitizer_scanner::max_examined_size;
    });
    if (all_short && coloured.summary() != summary)
        std::abort();
    // The first report wins: once complete, nothing changes it.
    if (scanner.complete()) {
        for (const auto& line : lines)
            scanner.feed_line(line);
        if (scanner.summary() != summary)
            std::abort();
    }
    return 0;
}
