#include "sanitizer_report.hpp"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <optional>

namespace warden::detail {
namespace {

using namespace std::string_view_literals;

constexpr auto npos = std::string_view::npos;

constexpr std::array<std::string_view, 6> sanitizer_names = {
    "AddressSanitizer",           "LeakSanitizer",     "ThreadSanitizer", "MemorySanitizer",
    "UndefinedBehaviorSanitizer", "HWAddressSanitizer"};

// UBSan's location is a path, so PATH_MAX bounds how far into a line its marker can be.
constexpr std::size_t max_location_prefix = 4096;
// ASan explains a SEGV in three lines before its stack, LSan a leak in two; interleaved
// stdout may add a few more.
constexpr std::size_t max_lines_before_stack = 16;

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_hex_digit(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim_left(std::string_view s) {
    while (!s.empty() && is_blank(s.front()))
        s.remove_prefix(1);
    return s;
}

std::string_view trim_right(std::string_view s) {
    while (!s.empty() && is_blank(s.back()))
        s.remove_suffix(1);
    return s;
}

// Drops ANSI escape sequences: CSI ("ESC [ params final", which is all the sanitizers print
// when colour is on) and two-byte ones. A sequence cut off by the end of `text` is dropped too.
void append_without_escapes(std::string_view text, std::string& out) {
    while (!text.empty()) {
        const auto esc = text.find('\x1b');
        out.append(text.substr(0, esc));
        if (esc == npos)
            return;
        std::size_t i = esc + 1;
        if (i < text.size() && text[i] == '[') {
            ++i;
            while (i < text.size() && text[i] >= 0x20 && text[i] <= 0x3f)
                ++i;
            if (i < text.size() && text[i] >= 0x40 && text[i] <= 0x7e)
                ++i;
        } else if (i < text.size()) {
            ++i;
        }
        text.remove_prefix(i);
    }
}

// What the scanner reads of `line`: all of it up to max_examined_size, else its start (where
// headers and frame numbers are) and its end (where a frame's location is), without colour.
std::string_view examined_text(std::string_view line, std::string& storage) {
    constexpr std::size_t limit = sanitizer_scanner::max_examined_size;
    if (line.size() <= limit && line.find('\x1b') == npos)
        return line;
    if (line.size() <= limit) {
        append_without_escapes(line, storage);
        return storage;
    }
    append_without_escapes(line.substr(0, limit / 2), storage);
    storage += " ... ";
    append_without_escapes(line.substr(line.size() - limit / 2), storage);
    return storage;
}

std::string capped_keeping_start(std::string_view s) {
    constexpr std::size_t max = sanitizer_scanner::max_field_size;
    if (s.size() <= max)
        return std::string(s);
    return std::string(s.substr(0, max - 3)) + "...";
}

// For paths, whose end (the file name and line) is the part worth keeping.
std::string capped_keeping_end(std::string_view s) {
    constexpr std::size_t max = sanitizer_scanner::max_field_size;
    if (s.size() <= max)
        return std::string(s);
    return "..." + std::string(s.substr(s.size() - (max - 3)));
}

// Moves `text` past "<Name>Sanitizer: " and returns the static name.
std::optional<std::string_view> take_sanitizer_name(std::string_view& text) {
    for (const auto name : sanitizer_names) {
        if (text.starts_with(name) && text.substr(name.size()).starts_with(": ")) {
            text.remove_prefix(name.size() + 2);
            return name;
        }
    }
    return std::nullopt;
}

// Moves `text` past the "==<pid>==" that the runtimes' Report() puts first.
bool take_pid_prefix(std::string_view& text) {
    if (!text.starts_with("=="))
        return false;
    std::size_t i = 2;
    while (i < text.size() && is_digit(text[i]))
        ++i;
    if (i == 2 || !text.substr(i).starts_with("=="))
        return false;
    text.remove_prefix(i + 2);
    return true;
}

std::string_view until_first(std::string_view text, std::initializer_list<std::string_view> ends) {
    std::size_t end = text.size();
    for (const auto e : ends)
        end = std::min(end, text.find(e));
    return trim_right(text.substr(0, end));
}

// Removes ":<digits>" from the end of `s`; false if it does not end that way.
bool take_number_suffix(std::string_view& s) {
    std::size_t i = s.size();
    while (i > 0 && is_digit(s[i - 1]))
        --i;
    if (i == s.size() || i == 0 || s[i - 1] != ':')
        return false;
    s = s.substr(0, i - 1);
    return true;
}

// "<file>:<line>" or "<file>:<line>:<column>", the file name without blanks or colons (so that
// "a:x:4" is not file "a:x" line 4).
bool is_file_line(std::string_view s) {
    if (!take_number_suffix(s))
        return false;
    take_number_suffix(s);
    return !s.empty() &&
           std::none_of(s.begin(), s.end(), [](char c) { return is_blank(c) || c == ':'; });
}

// "(<module>+0x<offset>)", as frames without source information name their code.
bool is_module_location(std::string_view s) {
    return s.size() > 2 && s.front() == '(' && s.back() == ')' && s.find("+0x") != npos;
}

struct header {
    std::string_view sanitizer; // static
    std::string_view kind;
    std::string_view location; // UBSan's, in its own line
};

std::optional<header> ubsan_header(std::string_view text) {
    constexpr auto marker = ": runtime error: "sv;
    const auto at = text.substr(0, max_location_prefix + marker.size()).find(marker);
    if (at == npos)
        return std::nullopt;
    const auto location = text.substr(0, at);
    if (location == "<unknown>")
        return header{
            "UndefinedBehaviorSanitizer", trim_right(text.substr(at + marker.size())), {}};
    if (!is_file_line(location))
        return std::nullopt;
    return header{"UndefinedBehaviorSanitizer", trim_right(text.substr(at + marker.size())),
                  location};
}

// TSan ends its header with the process id, which says nothing about the error.
std::string_view without_pid_suffix(std::string_view kind) {
    kind = trim_right(kind);
    const auto open = kind.rfind(" (pid=");
    if (open == npos || !kind.ends_with(')'))
        return kind;
    const auto digits = kind.substr(open + 6, kind.size() - open - 7);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), is_digit))
        return kind;
    return kind.substr(0, open);
}

std::optional<header> parse_header(std::string_view text) {
    auto rest = text;
    const bool has_pid = take_pid_prefix(rest);
    if (has_pid && rest.starts_with("ERROR: ")) {
        rest.remove_prefix("ERROR: "sv.size());
        if (const auto name = take_sanitizer_name(rest))
            return header{*name, until_first(rest, {" on ", " (", ": "}), {}};
        return std::nullopt;
    }
    if (rest.starts_with("WARNING: ")) {
        // ASan's own WARNINGs ("failed to allocate", "ignoring ...") are not reports, and
        // have no colon after the name anyway.
        rest.remove_prefix("WARNING: "sv.size());
        const auto name = take_sanitizer_name(rest);
        if (name == "ThreadSanitizer"sv) {
            const auto kind = without_pid_suffix(rest);
            // Newer runtimes say so, then re-exec themselves without ASLR and carry on.
            if (kind.starts_with("memory layout is incompatible"))
                return std::nullopt;
            return header{*name, kind, {}};
        }
        if (name == "MemorySanitizer"sv && has_pid)
            return header{*name, until_first(rest, {" on ", " (", ": "}), {}};
        return std::nullopt;
    }
    if (has_pid)
        return std::nullopt;
    return ubsan_header(text);
}

// The frame shapes of the runtimes:
//   "    #3 0x7f00 in f(int) /src/a.cpp:12:5"      ASan, LSan, MSan, UBSan
//   "    #3 0x7f00 in f(int) (/lib/libx.so+0x1234)"
//   "    #3 0x7f00  (/lib/libx.so+0x1234)"
//   "    #3 f(int) /src/a.cpp:12 (prog+0x1234)"     TSan
//   "    #3 <null> <null> (libstdc++.so.6+0xd44a2)"
// optionally followed by " (BuildId: <hex>)".
std::optional<sanitizer_frame> parse_frame(std::string_view text) {
    const auto indent = text.find_first_not_of(" \t");
    if (indent == 0 || indent == npos || text[indent] != '#')
        return std::nullopt;
    text.remove_prefix(indent + 1);
    std::size_t digits = 0;
    while (digits < text.size() && is_digit(text[digits]))
        ++digits;
    if (digits == 0 || digits == text.size() || text[digits] != ' ')
        return std::nullopt;
    text = trim_left(text.substr(digits));
    if (text.starts_with("0x")) {
        std::size_t end = 2;
        while (end < text.size() && is_hex_digit(text[end]))
            ++end;
        if (end == 2 || (end < text.size() && !is_blank(text[end])))
            return std::nullopt;
        text = trim_left(text.substr(end));
        if (text.starts_with("in "))
            text.remove_prefix(3);
    }
    text = trim_right(text);
    if (text.ends_with(')')) {
        if (const auto build_id = text.rfind(" (BuildId: "); build_id != npos)
            text = trim_right(text.substr(0, build_id));
    }
    sanitizer_frame f;
    if (text.ends_with(')')) {
        const auto open = text.rfind('(');
        if (open != npos && (open == 0 || is_blank(text[open - 1])) &&
            is_module_location(text.substr(open))) {
            f.location = text.substr(open);
            text = trim_right(text.substr(0, open));
        }
    }
    const auto space = text.rfind(' ');
    const auto last = space == npos ? text : text.substr(space + 1);
    if (last == "<null>" || is_file_line(last)) {
        // A source location says more than the module's offset.
        if (last != "<null>")
            f.location = last;
        text = space == npos ? std::string_view{} : trim_right(text.substr(0, space));
    }
    if (text != "<null>")
        f.function = text;
    return f;
}

bool starts_with_any(std::string_view s, std::initializer_list<std::string_view> prefixes) {
    return std::any_of(prefixes.begin(), prefixes.end(),
                       [s](std::string_view p) { return s.starts_with(p); });
}

// Frames of the runtime itself: its entry points and interceptors by name, its shared
// libraries by module, its sources (GCC's libsanitizer, LLVM's compiler-rt) by path. The
// allocation functions are the runtime's replacements (ASan and TSan report every leak and
// use-after-free from inside them); with clang's static runtime only their names tell.
bool in_sanitizer_runtime(const sanitizer_frame& f) {
    if (starts_with_any(f.function,
                        {"__interceptor_", "___interceptor_", "__interception::", "__sanitizer",
                         "__asan", "__lsan", "__tsan", "__msan", "__ubsan", "__hwasan"}))
        return true;
    const auto name = f.function.substr(0, f.function.find('('));
    for (const auto allocator :
         {"malloc"sv, "free"sv, "calloc"sv, "realloc"sv, "reallocarray"sv, "posix_memalign"sv,
          "aligned_alloc"sv, "memalign"sv, "valloc"sv, "pvalloc"sv, "operator new"sv,
          "operator new[]"sv, "operator delete"sv, "operator delete[]"sv}) {
        if (name == allocator)
            return true;
    }
    if (is_module_location(f.location)) {
        auto module = f.location.substr(1, f.location.rfind("+0x") - 1);
        module = module.substr(module.rfind('/') + 1);
        return starts_with_any(module, {"libasan.", "liblsan.", "libtsan.", "libubsan.", "libmsan.",
                                        "libhwasan.", "libclang_rt."});
    }
    return f.location.find("libsanitizer/") != npos || f.location.find("compiler-rt/lib/") != npos;
}

struct summary_line {
    std::string_view sanitizer; // static
    std::string_view kind;
    sanitizer_frame top;
};

// "SUMMARY: <Name>: <kind> <location> in <function>", the last two only when the runtime
// knows the top frame: "SUMMARY: AddressSanitizer: 40 byte(s) leaked in 1 allocation(s)." has
// none, which is why the location must look like one.
std::optional<summary_line> parse_summary(std::string_view text) {
    if (!text.starts_with("SUMMARY: "))
        return std::nullopt;
    text.remove_prefix("SUMMARY: "sv.size());
    const auto name = take_sanitizer_name(text);
    if (!name)
        return std::nullopt;
    text = trim_right(text);
    summary_line s{*name, text, {}};
    // Each candidate's location token lies between the previous candidate and this one, so
    // the search reads every byte a bounded number of times.
    for (std::size_t from = 0;;) {
        const auto in = text.find(" in", from);
        if (in == npos)
            break;
        from = in + 1;
        const bool at_end = in + 3 == text.size();
        if (!at_end && text[in + 3] != ' ')
            continue;
        const auto before = text.substr(0, in);
        const auto space = before.rfind(' ');
        if (space == npos)
            continue;
        const auto token = before.substr(space + 1);
        if (is_file_line(token) || is_module_location(token)) {
            s.kind = trim_right(before.substr(0, space));
            s.top.location = token;
            if (!at_end)
                s.top.function = trim_left(text.substr(in + 4));
            break;
        }
    }
    return s;
}

} // namespace

void sanitizer_scanner::feed_line(std::string_view line) {
    if (phase_ == phase::done)
        return;
    if (line.ends_with('\n'))
        line.remove_suffix(1);
    if (line.ends_with('\r'))
        line.remove_suffix(1);
    std::string storage;
    const auto text = examined_text(line, storage);
    if (phase_ == phase::searching)
        on_header_line(text);
    else
        on_report_line(text);
}

void sanitizer_scanner::on_header_line(std::string_view line) {
    if (const auto h = parse_header(line)) {
        sanitizer_ = h->sanitizer;
        kind_ = capped_keeping_start(h->kind);
        location_ = capped_keeping_end(h->location);
        // UBSan prints its stack (only with print_stacktrace=1) right under its line; so an
        // indented "#0" further down is somebody else's.
        max_lines_before_stack_ =
            h->sanitizer == "UndefinedBehaviorSanitizer"sv ? 0 : max_lines_before_stack;
        phase_ = phase::before_stack;
    } else if (const auto s = parse_summary(line)) {
        // The header was lost (cut from a long line, say); the summary still tells.
        sanitizer_ = s->sanitizer;
        kind_ = capped_keeping_start(s->kind);
        take_frame(s->top);
        phase_ = phase::done;
    }
}

void sanitizer_scanner::on_report_line(std::string_view line) {
    if (phase_ == phase::before_stack || phase_ == phase::in_stack) {
        if (const auto f = parse_frame(line)) {
            phase_ = take_frame(*f) ? phase::done : phase::in_stack;
            return;
        }
        if (phase_ == phase::in_stack || ++lines_before_stack_ > max_lines_before_stack_)
            phase_ = phase::after_stack;
    }
    // A report whose first stack is all runtime still has its SUMMARY line, which ends it.
    if (const auto s = parse_summary(line)) {
        if (s->sanitizer == sanitizer_)
            take_frame(s->top);
        phase_ = phase::done;
    }
}

bool sanitizer_scanner::take_frame(const sanitizer_frame& f) {
    if ((f.function.empty() && f.location.empty()) || in_sanitizer_runtime(f))
        return false;
    function_ = capped_keeping_start(f.function);
    // UBSan's own line names the place to the column; its frame adds the function.
    if (location_.empty())
        location_ = capped_keeping_end(f.location);
    return true;
}

std::string sanitizer_scanner::summary() const {
    if (!found())
        return {};
    std::string out(sanitizer_);
    if (!kind_.empty())
        out.append(": ").append(kind_);
    if (!function_.empty())
        out.append(" in ").append(function_);
    if (!location_.empty())
        out.append(function_.empty() || location_.front() != '(' ? " at " : " ").append(location_);
    return out;
}

std::string find_sanitizer_report(std::span<const std::string> lines) {
    sanitizer_scanner scanner;
    for (const auto& line : lines) {
        scanner.feed_line(line);
        if (scanner.found() && scanner.complete())
            break;
    }
    return scanner.summary();
}

} // namespace warden::detail
