#include "failure_record.hpp"

#include <algorithm>
#include <list>
#include <unordered_map>

#include <fmt/format.h>

#include "core.hpp"
#include "fork_safe.hpp"
#include "registry.hpp"
#include "stack.hpp"
#include "throw_site.hpp"

namespace warden::detail {

namespace {

// The exception's what() and type name, into the report.
void write_what_and_type(failure_record& r) {
    {
        std::lock_guard lock(r.mutex);
        if (r.described)
            return;
    }
    auto d = describe_exception(r.report.error); // error: written before the record was shared
    std::lock_guard lock(r.mutex);
    if (r.described)
        return;
    r.report.what = std::move(d.what);
    r.report.type = std::move(d.type);
    r.described = true;
}

// The spawn stack and the throw stack, symbolised, into the report.
void write_stacks(failure_record& r) {
    if (!r.spawn_stack) // capture::location: neither stack
        return;
    {
        std::lock_guard lock(r.mutex);
        if (r.symbolised)
            return;
    }
    auto text = symbolise(*r.spawn_stack);
    auto thrown = throw_stack_text(r.report.error);
    std::lock_guard lock(r.mutex);
    if (r.symbolised)
        return;
    r.report.origin.stacktrace = std::move(text);
    r.report.throw_stack = std::move(thrown);
    r.symbolised = true;
}

failure_report copy_report(failure_record& r) {
    std::lock_guard lock(r.mutex);
    return r.report;
}

// Writes `which` of `r` once, without the lock while it writes; the first written is kept.
template <class Write>
std::shared_ptr<const failure_report>
write_once(failure_record& r, std::shared_ptr<const failure_report> failure_record::*which,
           Write write) {
    {
        std::lock_guard lock(r.mutex);
        if (r.*which)
            return r.*which;
    }
    auto written = std::make_shared<const failure_report>(write());
    std::lock_guard lock(r.mutex);
    if (!(r.*which))
        r.*which = std::move(written);
    return r.*which;
}

// report_for() answers for exceptions whose owner may already be gone (a supervisor declared
// inside the try block is destroyed before the catch handler runs), so failures are kept
// here, not in the supervisor. Bounded: the oldest are dropped past this many.
constexpr std::size_t kept_failures = 1024;

// A list with an index, not a scan: a child's failure is looked up by its exception object
// before its parent is woken (open_failure), and a scan of 1024 records, each a pointer away,
// cost that path more than the rest of it once a test binary had failed that often
// (bench_failure_latency).
struct kept_failure_list {
    std::mutex mutex;
    std::list<std::shared_ptr<failure_record>> newest_last;
    // The newest record of each exception object among them.
    std::unordered_map<const void*, std::list<std::shared_ptr<failure_record>>::iterator>
        newest_of_object;
};

// Never destroyed: a supervisor may end during exit's static destructors.
kept_failure_list& kept() {
    static auto* list = [] {
        auto* made = new kept_failure_list;
        hold_across_fork(made->mutex); // a failure in a forked child is kept here too
        return made;
    }();
    return *list;
}

// Returns the failure it drops to make room, if any.
std::shared_ptr<failure_record> make_newest(const std::shared_ptr<failure_record>& r) {
    std::shared_ptr<failure_record> dropped; // destroyed after the unlock: it holds user objects
    auto& k = kept();
    std::lock_guard lock(k.mutex);
    if (r->kept_at) {
        k.newest_last.splice(k.newest_last.end(), k.newest_last, *r->kept_at);
    } else {
        k.newest_last.push_back(r);
        r->kept_at = std::prev(k.newest_last.end());
    }
    if (r->report.error) // written before the record was shared
        k.newest_of_object[object_of(r->report.error)] = *r->kept_at;
    if (k.newest_last.size() > kept_failures) {
        auto& oldest = k.newest_last.front();
        if (oldest->report.error)
            if (auto it = k.newest_of_object.find(object_of(oldest->report.error));
                it != k.newest_of_object.end() && it->second == k.newest_last.begin())
                k.newest_of_object.erase(it);
        oldest->kept_at.reset();
        dropped = std::move(oldest);
        k.newest_last.pop_front();
    }
    return dropped;
}

} // namespace

failure_report write_report(failure_record& r,
                            const std::vector<std::shared_ptr<failure_record>>& later,
                            const std::vector<std::string>& stragglers,
                            std::size_t later_not_kept) {
    write_what_and_type(r);
    write_stacks(r);
    failure_report out = copy_report(r);
    if (r.passed_up_from)
        out.inner = report_for_record(*r.passed_up_from);
    if (later_not_kept > 0)
        out.suppressed.push_back(
            fmt::format("... {} earlier failure{}, already thrown by a wait, no longer kept",
                        later_not_kept, later_not_kept == 1 ? "" : "s"));
    for (const auto& l : later) {
        write_what_and_type(*l);
        // One line each, even when what() has several (a process's output tail).
        auto line = first_line(copy_report(*l));
        out.suppressed.push_back(line.substr(0, line.find('\n')));
    }
    out.stragglers = stragglers;
    return out;
}

std::shared_ptr<const failure_report> kept_report(failure_record& r) {
    return write_once(r, &failure_record::written, [&] { return write_report(r); });
}

std::shared_ptr<const failure_report> report_for_record(failure_record& r) {
    std::optional<failure_record::as_thrown> thrown;
    {
        std::lock_guard lock(r.mutex);
        if (r.written_as_thrown)
            return r.written_as_thrown;
        thrown = r.thrown;
    }
    if (!thrown)
        return kept_report(r);
    return write_once(r, &failure_record::written_as_thrown, [&] {
        std::vector<std::shared_ptr<failure_record>> later;
        later.reserve(thrown->later.size());
        for (const auto& weak : thrown->later)
            if (auto l = weak.lock())
                later.push_back(std::move(l));
        return write_report(r, later, thrown->stragglers, thrown->later_not_kept);
    });
}

std::shared_ptr<failure_record> remember_failure(const std::shared_ptr<failure_record>& r) {
    return make_newest(r);
}

void remember_thrown(const std::shared_ptr<failure_record>& r, failure_record::as_thrown thrown) {
    {
        std::lock_guard lock(r->mutex);
        r->thrown = std::move(thrown);
    }
    // Remembered at its child's end already: it moves, it is not doubled.
    make_newest(r);
}

std::shared_ptr<failure_record> find_failure(const std::exception_ptr& error) noexcept {
    if (!error)
        return nullptr;
    auto& k = kept();
    std::lock_guard lock(k.mutex);
    const auto it = k.newest_of_object.find(object_of(error));
    return it != k.newest_of_object.end() ? *it->second : nullptr;
}

} // namespace warden::detail
