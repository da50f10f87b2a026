#include <warden/report.hpp>

#include <deque>
#include <memory>
#include <mutex>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "json.hpp"
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

std::string first_line(const failure_report& r) {
    return fmt::format("{} ({}) failed: {}", r.child, to_string(r.kind), r.what);
}

namespace {

// Each line of `lines` (a symbolised stack) on a line of its own after `indent`.
void append_indented(std::string& out, std::string_view lines, std::string_view indent) {
    std::size_t start = 0;
    while (start < lines.size()) {
        auto end = lines.find('\n', start);
        if (end == std::string_view::npos)
            end = lines.size();
        out += fmt::format("{}{}\n", indent, lines.substr(start, end - start));
        start = end + 1;
    }
}

// report_for() answers for exceptions whose owner may already be gone (a supervisor
// declared inside the try block is destroyed before the catch handler runs), so reports
// live here, not in the supervisor. Bounded: the oldest are dropped past this many.
constexpr std::size_t registry_capacity = 1024;

std::mutex registry_mutex;
std::deque<std::shared_ptr<pending_report>> registry;

std::mutex test_mutex;
// Shared, not copied into every child's record: a test name is usually too long for the
// string's inline buffer, and a heap copy per spawn is what a trivial child must not cost.
std::shared_ptr<const std::string> test_name;

} // namespace

std::shared_ptr<const failure_report> pending_report::get() {
    {
        std::lock_guard lock(mutex_);
        if (report_)
            return report_;
    }
    auto written = std::make_shared<const failure_report>(write_());
    std::lock_guard lock(mutex_);
    if (!report_)
        report_ = std::move(written);
    return report_;
}

std::shared_ptr<pending_report> register_report(std::exception_ptr error,
                                                unique_function<failure_report()> write) {
    auto entry = std::make_shared<pending_report>(std::move(error), std::move(write));
    std::shared_ptr<pending_report> dropped; // destroyed after the unlock: it holds user objects
    std::lock_guard lock(registry_mutex);
    registry.push_back(entry);
    if (registry.size() > registry_capacity) {
        dropped = std::move(registry.front());
        registry.pop_front();
    }
    return entry;
}

} // namespace detail

std::string failure_report::to_string() const {
    std::string out = detail::first_line(*this) + "\n";
    if (!type.empty() && type != what)
        out += fmt::format("  exception type: {}\n", type);
    out += detail::describe_origin(origin, "  ");
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

namespace detail {

std::shared_ptr<pending_report> find_report(const std::exception_ptr& error) noexcept {
    if (!error)
        return nullptr;
    std::lock_guard lock(registry_mutex);
    // Newest first: a failure is registered again, with its suppressed list, when thrown.
    for (auto it = registry.rbegin(); it != registry.rend(); ++it)
        if ((*it)->error() == error)
            return *it;
    return nullptr;
}

} // namespace detail

// The pointer stays valid while the registry holds the entry: for the last 1024 failures.
const failure_report* report_for(const std::exception_ptr& error) noexcept {
    auto entry = detail::find_report(error);
    if (!entry)
        return nullptr;
    try {
        // The registry's entry keeps the report alive, as the contract for the pointer says.
        return entry->get().get();
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
