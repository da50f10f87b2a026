#include <warden/report.hpp>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>

#include <unistd.h>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "failure_record.hpp"
#include "fork_safe.hpp"
#include "json.hpp"
#include "lines.hpp"
#include "registry.hpp"

namespace warden {

std::string_view to_string(child_kind kind) noexcept {
    switch (kind) {
    case child_kind::coroutine:
        return "coroutine";
    case child_kind::thread:
        return "thread";
    case child_kind::process:
        return "process";
    case child_kind::forked:
        return "forked";
    }
    return "unknown";
}

namespace detail {

std::string describe_origin(const origin& o, std::string_view indent) {
    std::string out;
    if (o.where.file_name() != nullptr && *o.where.file_name() != '\0')
        out += fmt::format("{}spawned at {}:{} in {}\n", indent, o.where.file_name(),
                           o.where.line(), o.where.function_name());
    if (!o.test.empty())
        out += fmt::format("{}in test \"{}\"\n", indent, o.test);
    if (!o.parent.empty())
        out += fmt::format("{}by child {}\n", indent, o.parent);
    out += fmt::format("{}supervisor {}\n", indent, o.supervisor);
    return out;
}

namespace {

// A pointer rather than a function-local static: a forked child replaces it, and a static's
// guard copied by fork() while another thread of the parent was initialising it would stay
// locked in the child. Values are never freed (references to them are handed out), and each
// keeps the one it replaced reachable, so that LeakSanitizer does not count it: one per
// process, two when a forked child or a test replaces it.
struct outer_value_node {
    std::string value;
    const outer_value_node* replaced = nullptr;
};
// Release on publishing, acquire on reading: a reader sees the value's text, written before.
std::atomic<const outer_value_node*> outer_value{nullptr};

// Walks `at` back to the start of a UTF-8 sequence, so that a cut leaves whole characters.
std::size_t character_start(std::string_view s, std::size_t at) {
    while (at > 0 && at < s.size() && (static_cast<unsigned char>(s[at]) & 0xc0) == 0x80)
        --at;
    return at;
}

} // namespace

const std::string& outer_origin() {
    if (const auto* node = outer_value.load(std::memory_order_acquire))
        return node->value;
    const char* env = std::getenv(std::string(origin_variable).c_str());
    auto fresh = std::make_unique<outer_value_node>();
    fresh->value = env != nullptr ? env : "";
    // Two first callers may race: the loser's copy is dropped and the winner's returned.
    const outer_value_node* expected = nullptr;
    if (outer_value.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel))
        return fresh.release()->value;
    return expected->value;
}

void set_outer_origin(std::string value) {
    auto node = std::make_unique<outer_value_node>();
    node->value = std::move(value);
    auto* published = node.release();
    // Readers read only `value`, written before the exchange publishes it.
    published->replaced = outer_value.exchange(published, std::memory_order_acq_rel);
}

std::string origin_value(const origin& o) {
    std::string out;
    if (!o.test.empty())
        out += fmt::format("test \"{}\" ", o.test);
    out += fmt::format("at {}:{}", o.where.file_name() != nullptr ? o.where.file_name() : "?",
                       o.where.line());
    if (!o.parent.empty())
        out += fmt::format(", by child {}", o.parent);
    out += fmt::format(", supervisor {}, pid {}", o.supervisor, ::getpid());
    if (!o.outer.empty())
        out.append(" <- ").append(o.outer);
    // One line, and nothing an environment cannot hold (NUL).
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            c = ' ';
    if (out.size() > max_origin_value_size) {
        // The middle goes: the start is the nearest spawn, the end the test that began it all.
        constexpr std::string_view cut = "...";
        const std::size_t keep = (max_origin_value_size - cut.size()) / 2;
        const std::size_t head = character_start(out, keep);
        // 3 bytes later than `keep` from the end: a UTF-8 sequence's start is at most that far
        // back.
        const std::size_t tail = character_start(out, out.size() - keep + 3);
        out = out.substr(0, head) + std::string(cut) + out.substr(tail);
    }
    return out;
}

std::string first_line(const failure_report& r) {
    return fmt::format("{} ({}) failed: {}", r.child, to_string(r.kind), r.what);
}

namespace {

// Each line of `lines` (a symbolised stack) on a line of its own after `indent`.
void append_indented(std::string& out, std::string_view lines, std::string_view indent) {
    for_each_line(lines,
                  [&](std::string_view line) { out.append(indent).append(line).append(1, '\n'); });
}

std::mutex test_mutex;
[[maybe_unused]] const bool test_held_across_fork = (hold_across_fork(test_mutex), true);
// Shared, not copied into every child's record: a test name is usually too long for the
// string's inline buffer, and a heap copy per spawn is what a trivial child must not cost.
std::shared_ptr<const std::string> test_name;

} // namespace

} // namespace detail

std::string failure_report::to_string() const {
    std::string out = detail::first_line(*this) + "\n";
    if (!type.empty() && type != what)
        out += fmt::format("  exception type: {}\n", type);
    out += detail::describe_origin(origin, "  ");
    if (!origin.outer.empty())
        out += fmt::format("  inside: {}\n", origin.outer);
    out += fmt::format("  failed at {:%F %T} UTC\n",
                       fmt::gmtime(std::chrono::system_clock::to_time_t(when)));
    if (!suppressed.empty()) {
        out += fmt::format("  later failures ({}):\n", suppressed.size());
        for (const auto& line : suppressed)
            out += fmt::format("    {}\n", line);
    }
    if (!stragglers.empty()) {
        out += "  still running when the wait gave up:\n";
        for (const auto& line : stragglers)
            out += fmt::format("    {}\n", line);
    }
    // A forked child's remote_error has it in what(), on the first line's heels already.
    if (!throw_stack.empty() && what.find(throw_stack) == std::string::npos) {
        out += "  thrown at:\n";
        detail::append_indented(out, throw_stack, "    ");
    }
    if (!origin.stacktrace.empty()) {
        out += "  spawn stack:\n";
        detail::append_indented(out, origin.stacktrace, "    ");
    }
    // Innermost last: the chain ends at the child that threw.
    for (const failure_report* r = inner.get(); r != nullptr; r = r->inner.get()) {
        out += fmt::format("  passed up from {} ({}) of supervisor {}\n", r->child,
                           warden::to_string(r->kind), r->origin.supervisor);
        out += detail::describe_origin(r->origin, "    ");
    }
    return out;
}

namespace detail {

std::string origin_json(const origin& o) {
    const char* file = o.where.file_name() != nullptr ? o.where.file_name() : "";
    const char* function = o.where.function_name() != nullptr ? o.where.function_name() : "";
    return json_object()
        .field("file", file)
        .field("line", static_cast<long long>(o.where.line()))
        .field("function", function)
        .field("test", o.test)
        .field("parent", o.parent)
        .field("supervisor", o.supervisor)
        .field("stacktrace", o.stacktrace)
        .field("outer", o.outer)
        .str();
}

} // namespace detail

std::string failure_report::to_json() const {
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count() %
        1000;
    return detail::json_object()
        .field("child", child)
        .field("kind", warden::to_string(kind))
        .field("what", what)
        .field("type", type)
        .field("throw_stack", throw_stack)
        .field("when", fmt::format("{:%FT%T}.{:03}Z",
                                   fmt::gmtime(std::chrono::system_clock::to_time_t(when)), millis))
        .raw("origin", detail::origin_json(origin))
        .field("suppressed", suppressed)
        .field("stragglers", stragglers)
        .raw("inner", inner ? inner->to_json() : std::string("null"))
        .str();
}

const failure_report& failure_report::innermost() const noexcept {
    const failure_report* r = this;
    while (r->inner)
        r = r->inner.get();
    return *r;
}

// The pointer stays valid while the failure is kept: for the last 1024 failures.
const failure_report* report_for(const std::exception_ptr& error) noexcept {
    auto failure = detail::find_failure(error);
    if (!failure)
        return nullptr;
    try {
        // The kept failure keeps its report alive, as the contract for the pointer says.
        return detail::report_for_record(*failure).get();
    } catch (...) {
        return nullptr; // out of memory while writing it: no report rather than a crash
    }
}

void set_current_test(std::string name) {
    auto shared = name.empty() ? nullptr : std::make_shared<const std::string>(std::move(name));
    std::lock_guard lock(detail::test_mutex);
    detail::test_name = std::move(shared);
}

std::string current_test() {
    auto name = detail::current_test_shared();
    return name ? *name : std::string();
}

namespace detail {

std::shared_ptr<const std::string> current_test_shared() {
    std::lock_guard lock(test_mutex);
    return test_name;
}

} // namespace detail

} // namespace warden
