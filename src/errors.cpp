#include <warden/errors.hpp>

#include <cstring>
#include <signal.h>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "crash_text.hpp"
#include "registry.hpp"

namespace warden {

namespace {

std::string join_argv(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& arg : argv) {
        if (!out.empty())
            out += ' ';
        out += arg;
    }
    return out;
}

std::string tail_text(const std::vector<std::string>& tail) {
    if (tail.empty())
        return "\n  (no output)";
    std::string out = "\n  last output:";
    for (const auto& line : tail)
        out += "\n    " + line;
    return out;
}

std::string left_running_text(const std::vector<std::string>& left_running) {
    std::string out;
    for (const auto& d : left_running)
        out += "\n  left running, killed: " + d;
    return out;
}

// A sanitizer report is the cause worth reading first: it goes before the rest of what().
std::string with_sanitizer(const std::string& sanitizer, std::string message) {
    return sanitizer.empty() ? message : sanitizer + "; " + message;
}

std::string running_children(const std::string& supervisor, std::chrono::milliseconds timeout,
                             const std::vector<child_info>& running, std::size_t unlisted) {
    const std::size_t count = running.size() + unlisted;
    std::string out = fmt::format("warden: supervisor {}: {} child{} still running after {} ms",
                                  supervisor, count, count == 1 ? "" : "ren", timeout.count());
    for (const auto& child : running) {
        out += fmt::format("\n  {} ({}) running for {:.3f} s", child.name, to_string(child.kind),
                           std::chrono::duration<double>(child.running_for).count());
        auto where = detail::describe_origin(child.origin, "    ");
        if (!where.empty() && where.back() == '\n')
            where.pop_back();
        out += "\n" + where;
    }
    if (unlisted > 0)
        out += fmt::format("\n  ... and {} more", unlisted);
    return out;
}

std::string describe_group(const std::vector<failure_report>& reports) {
    std::string out =
        fmt::format("warden: {} child{} failed", reports.size(), reports.size() == 1 ? "" : "ren");
    for (const auto& r : reports)
        out += "\n  " + detail::first_line(r);
    return out;
}

} // namespace

std::string signal_name(int signal) {
    if (const char* abbrev = sigabbrev_np(signal))
        return std::string("SIG") + abbrev;
    return "signal " + std::to_string(signal);
}

join_timeout::join_timeout(std::string supervisor, std::chrono::milliseconds timeout,
                           std::vector<child_info> running, std::size_t unlisted, std::string dump)
    : std::runtime_error(dump.empty() ? running_children(supervisor, timeout, running, unlisted)
                                      : std::move(dump))
    , timeout_(timeout)
    , running_(std::move(running))
    , unlisted_(unlisted) {}

failure_group::failure_group(std::vector<failure_report> reports)
    : std::runtime_error(describe_group(reports))
    , reports_(std::move(reports)) {}

spawn_error::spawn_error(std::error_code ec, std::string argument, const std::string& detail)
    : std::system_error(ec, fmt::format("warden: cannot spawn: {} ({})", detail, argument))
    , argument_(std::move(argument)) {}

process_error::process_error(std::vector<std::string> argv, int pid, int exit_code,
                             std::vector<std::string> output_tail, std::string sanitizer,
                             std::vector<std::string> left_running)
    : std::runtime_error(with_sanitizer(
          sanitizer,
          fmt::format("process `{}` (pid {}) exited with code {}{}{}", join_argv(argv), pid,
                      exit_code, left_running_text(left_running), tail_text(output_tail))))
    , argv_(std::move(argv))
    , pid_(pid)
    , exit_code_(exit_code)
    , output_tail_(std::move(output_tail))
    , sanitizer_(std::move(sanitizer))
    , left_running_(std::move(left_running)) {}

namespace {

std::string crashed_message(const std::vector<std::string>& argv, int pid, int signal,
                            bool core_dumped, const std::vector<std::string>& output_tail,
                            const std::vector<std::string>& left_running) {
    return fmt::format("process `{}` (pid {}) killed by {} ({}){}{}{}", join_argv(argv), pid,
                       warden::signal_name(signal), signal, core_dumped ? ", core dumped" : "",
                       left_running_text(left_running), tail_text(output_tail));
}

} // namespace

process_crashed::process_crashed(std::vector<std::string> argv, int pid, int signal,
                                 bool core_dumped, std::vector<std::string> output_tail,
                                 std::string crash_stack, std::string sanitizer,
                                 std::vector<std::string> left_running)
    : process_crashed(std::move(argv), pid, signal, core_dumped, std::move(output_tail),
                      std::make_shared<detail::crash_text>(std::move(crash_stack)),
                      std::move(sanitizer), std::move(left_running)) {}

process_crashed::process_crashed(std::vector<std::string> argv, int pid, int signal,
                                 bool core_dumped, std::vector<std::string> output_tail,
                                 std::shared_ptr<detail::crash_text> crash_frames,
                                 std::string sanitizer, std::vector<std::string> left_running)
    : std::runtime_error(with_sanitizer(
          sanitizer, crashed_message(argv, pid, signal, core_dumped, output_tail, left_running)))
    , argv_(std::move(argv))
    , pid_(pid)
    , signal_(signal)
    , core_dumped_(core_dumped)
    , output_tail_(std::move(output_tail))
    , sanitizer_(std::move(sanitizer))
    , left_running_(std::move(left_running))
    , crash_(std::move(crash_frames)) {}

const char* process_crashed::what() const noexcept {
    const char* head = std::runtime_error::what();
    const std::string& message = crash_->message(head);
    return message.empty() ? head : message.c_str();
}

const std::string& process_crashed::crash_stack() const noexcept {
    return crash_->stack();
}

std::string process_crashed::signal_name() const {
    return warden::signal_name(signal_);
}

remote_error::remote_error(std::string type_name, std::string what, std::string stacktrace,
                           std::string sanitizer, std::vector<std::string> left_running)
    : std::runtime_error(with_sanitizer(
          sanitizer, fmt::format("{}: {}{}{}", type_name, what,
                                 stacktrace.empty() ? "" : "\n  thrown at:\n" + stacktrace,
                                 left_running_text(left_running))))
    , type_name_(std::move(type_name))
    , what_(std::move(what))
    , stacktrace_(std::move(stacktrace))
    , sanitizer_(std::move(sanitizer))
    , left_running_(std::move(left_running)) {}

timeout_error::timeout_error(const std::string& what, std::vector<std::string> output_tail)
    : std::runtime_error(what + tail_text(output_tail))
    , output_tail_(std::move(output_tail)) {}

} // namespace warden
