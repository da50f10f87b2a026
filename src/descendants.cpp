// Descendants that outlive their warden child: the subreaper, the lineage marker, the sweep.
// The design, and what the subreaper changes for the rest of the program, is in
// docs/processes.md ("Descendants").

#include "descendants.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "fork_safe.hpp"
#include "leak_check.hpp"
#include "log.hpp"
#include "process_state.hpp"

namespace warden::detail {

namespace {

std::mutex subreaper_mutex;
// The process that made itself the subreaper: a fork's child copies this but not the
// attribute, so it asks again.
pid_t subreaper_of = 0;
bool subreaper_refused = false;

std::atomic<std::uint64_t> next_serial{0};

// Pidfds held by every noted_descendants of the program, and how many it may hold.
std::atomic<std::size_t> noted_held{0};
std::size_t noted_budget() noexcept {
    static const std::size_t budget = [] {
        rlimit files{};
        const std::size_t soft =
            ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
                ? static_cast<std::size_t>(files.rlim_cur)
                : 1024;
        return std::min<std::size_t>(256, soft / 4);
    }();
    return budget;
}

// How long a child of this program with no environment to read is looked at again.
constexpr std::chrono::milliseconds undecided_budget{20};

std::mutex children_mutex;
std::unordered_set<pid_t>& noted() {
    // Never destroyed: a supervisor may end during exit's static destructors.
    static auto* pids = new std::unordered_set<pid_t>;
    return *pids;
}

bool is_noted(pid_t pid) {
    std::lock_guard lock(children_mutex);
    return noted().contains(pid);
}

// The environment a process was started with (exec's copy, not what it setenv'd since).
// Nothing at all: the process is in the middle of an exec (the new image has no environment
// yet), or has an empty one.
std::optional<bool> carries_token(pid_t pid, std::string_view token) {
    const std::string env =
        read_proc_file(std::filesystem::path("/proc") / std::to_string(pid) / "environ");
    if (env.empty())
        return std::nullopt;
    std::size_t start = 0;
    while (start < env.size()) {
        auto end = env.find('\0', start);
        if (end == std::string::npos)
            end = env.size();
        const std::string_view entry(env.data() + start, end - start);
        start = end + 1;
        if (!entry.starts_with(lineage_variable) || entry.size() == lineage_variable.size() ||
            entry[lineage_variable.size()] != '=')
            continue;
        auto value = entry.substr(lineage_variable.size() + 1);
        while (!value.empty()) {
            const auto space = value.find(' ');
            if (value.substr(0, space) == token)
                return true;
            if (space == std::string_view::npos)
                break;
            value.remove_prefix(space + 1);
        }
    }
    return false;
}

int pidfd_of(pid_t pid) noexcept {
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

// True once the process behind `pidfd` is reaped here, or was reaped elsewhere (ECHILD: the
// rest of the program reaped it, a waitpid(-1)); gone either way.
bool reaped(int pidfd) noexcept {
    siginfo_t info{};
    int r;
    do
        r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                     WEXITED | WNOHANG);
    while (r == -1 && errno == EINTR);
    return (r == 0 && info.si_pid != 0) || (r == -1 && errno == ECHILD);
}

// Reaps and forgets those of `children` that have ended.
void reap_ended(std::vector<child_by_pidfd>& children) noexcept {
    std::erase_if(children, [](const child_by_pidfd& c) {
        if (!reaped(c.pidfd))
            return false;
        ::close(c.pidfd);
        return true;
    });
}

// Waits up to `wait` for one of `children` to end; false if none did.
bool wait_for_an_end(const std::vector<child_by_pidfd>& children,
                     std::chrono::milliseconds wait) noexcept {
    std::vector<pollfd> fds;
    try {
        fds.reserve(children.size());
    } catch (...) {
        return false;
    }
    for (const auto& c : children)
        fds.push_back({c.pidfd, POLLIN, 0});
    return ::poll(fds.data(), fds.size(), static_cast<int>(wait.count())) > 0;
}

// The killed descendants not ended when their sweep gave up (descendants.hpp). Each is a child
// of this program, reached only through its pidfd, so a pid reaped elsewhere and reused is
// never waited for.
std::mutex killed_mutex;
std::vector<child_by_pidfd>& killed() {
    // Never destroyed: a supervisor may end during exit's static destructors.
    static auto* processes = new std::vector<child_by_pidfd>;
    return *processes;
}

// A forked child drops what it copied of the parent's: the parent's children are not its own
// (a pid noted there would hide a reused one here), its kept pidfds are closed, and the noted
// pidfds it counts are the parent's, whose objects never run here. Single-threaded, after
// fork_safe.hpp's handler released the locks.
void after_fork_in_child() noexcept {
    for (const auto& k : killed())
        ::close(k.pidfd);
    killed().clear();
    noted().clear();
    noted_held.store(0);
}

[[maybe_unused]] const bool fork_handlers_registered = [] {
    hold_across_fork(subreaper_mutex);
    hold_across_fork(children_mutex);
    hold_across_fork(killed_mutex);
    return ::pthread_atfork(nullptr, nullptr, &after_fork_in_child) == 0;
}();

} // namespace

void keep_killed(pid_t pid, int pidfd) noexcept {
    try {
        std::lock_guard lock(killed_mutex);
        killed().push_back({pid, pidfd});
    } catch (...) {
        ::close(pidfd); // out of memory: left to the program
    }
}

std::size_t reap_killed_descendants(std::chrono::milliseconds wait) noexcept {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + wait;
    std::vector<child_by_pidfd> taken;
    {
        std::lock_guard lock(killed_mutex);
        if (killed().empty())
            return 0;
        taken.swap(killed());
    }
    for (;;) {
        reap_ended(taken);
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
        if (taken.empty() || left.count() <= 0 || !wait_for_an_end(taken, left))
            break;
    }
    std::lock_guard lock(killed_mutex);
    try {
        killed().insert(killed().end(), taken.begin(), taken.end());
    } catch (...) {
        for (const auto& k : taken)
            ::close(k.pidfd); // out of memory: left to the program
    }
    return killed().size();
}

bool become_subreaper() noexcept {
    int refused = 0;
    {
        std::lock_guard lock(subreaper_mutex);
        const pid_t self = ::getpid();
        if (subreaper_of == self)
            return true;
        if (::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0) {
            subreaper_of = self;
            return true;
        }
        if (subreaper_refused)
            return false;
        subreaper_refused = true;
        refused = errno;
    }
    // After the unlock: the lock is held across fork() by a thread that holds the stdio locks
    // (fork_safe.hpp), and a log line takes stderr's.
    log().warn("cannot become the subreaper of spawned processes ({}): a descendant that leaves "
               "its process group outlives its process",
               std::strerror(refused));
    return false;
}

std::string new_lineage_token() {
    return fmt::format("{}.{}", ::getpid(), ++next_serial);
}

std::string lineage_entry(const std::string& token) {
    std::string entry = fmt::format("{}={}", lineage_variable, token);
    // Ours first, then the chain of the wardens above: a warden that started this program
    // finds its token in every process below it too.
    if (const char* outer = std::getenv(std::string(lineage_variable).c_str());
        outer != nullptr && *outer != '\0')
        entry.append(" ").append(outer);
    return entry;
}

bool is_lineage_entry(const char* entry) noexcept {
    return std::string_view(entry).starts_with(lineage_variable) &&
           entry[lineage_variable.size()] == '=';
}

void noted_descendants::note(pid_t leader) noexcept {
    try {
        std::vector<pid_t> below = children_of(leader);
        const pid_t self = ::getpid();
        for (const pid_t pid : child_processes()) {
            if (pid == leader || is_noted(pid))
                continue;
            const auto stat = process_stat(pid);
            if (stat && stat->ppid == self && stat->pgrp == leader)
                below.push_back(pid);
        }
        walk(std::move(below));
    } catch (...) {
        // Out of memory: those noted so far are kept.
    }
}

void noted_descendants::note_under(const std::vector<pid_t>& roots) noexcept {
    try {
        std::vector<pid_t> below;
        for (const pid_t root : roots) {
            const auto children = children_of(root);
            below.insert(below.end(), children.begin(), children.end());
        }
        walk(std::move(below));
    } catch (...) {
        // Out of memory: those noted so far are kept.
    }
}

void noted_descendants::walk(std::vector<pid_t> below) {
    const auto noted_already = [this](pid_t pid) {
        return std::any_of(list_.begin(), list_.end(),
                           [pid](const child_by_pidfd& p) { return p.pid == pid; });
    };
    while (!below.empty() && list_.size() < max_per_child) {
        const pid_t pid = below.back();
        below.pop_back();
        if (noted_already(pid))
            continue;
        if (noted_held.fetch_add(1) >= noted_budget()) {
            noted_held.fetch_sub(1);
            return;
        }
        // Opened just after the pid was listed as a child: pids are handed out in turn, so it
        // is not another process's unless all of pid_max went by meanwhile.
        const int pidfd = above_stdio(pidfd_of(pid));
        if (pidfd < 0) {
            noted_held.fetch_sub(1);
            continue; // ended and reaped by its parent already
        }
        list_.push_back({pid, pidfd});
        const auto children = children_of(pid);
        below.insert(below.end(), children.begin(), children.end());
    }
}

std::vector<child_by_pidfd> noted_descendants::release() noexcept {
    noted_held.fetch_sub(list_.size());
    return std::exchange(list_, {});
}

void noted_descendants::clear() noexcept {
    auto list = release();
    close_all(list);
}

void close_all(std::vector<child_by_pidfd>& processes) noexcept {
    for (const auto& p : processes)
        ::close(p.pidfd);
    processes.clear();
}

void note_child(pid_t pid) {
    std::lock_guard lock(children_mutex);
    noted().insert(pid);
}

void forget_child(pid_t pid) noexcept {
    std::lock_guard lock(children_mutex);
    noted().erase(pid);
}

descendant_sweep::descendant_sweep(pid_t child, std::string token)
    : child_(child)
    , token_(std::move(token))
    , self_(::getpid())
    , own_pgrp_(::getpgrp())
    , own_sid_(::getsid(0)) {}

std::optional<bool> descendant_sweep::attributed(pid_t pgrp, pid_t sid, pid_t pid,
                                                 bool alive) const {
    // The child is unreaped while the sweep runs, so its pid, and with it its group id, is
    // still its own.
    if (pgrp == child_)
        return true;
    if (std::find(groups_.begin(), groups_.end(), pgrp) != groups_.end() ||
        std::find(sessions_.begin(), sessions_.end(), sid) != sessions_.end())
        return true;
    // A zombie's environment is gone: only its group or session can tell.
    if (!alive || token_.empty())
        return false;
    return carries_token(pid, token_);
}

void descendant_sweep::add_noted(std::vector<child_by_pidfd> noted) noexcept {
    try {
        noted_.insert(noted_.end(), noted.begin(), noted.end());
        noted.clear();
    } catch (...) {
        close_all(noted); // out of memory: the sweep goes on with its other rules
    }
}

void descendant_sweep::first_round() noexcept {
    reap_killed_descendants(std::chrono::milliseconds(0));
    round();
}

bool descendant_sweep::round() noexcept {
    bool found = false;
    undecided_ = false;
    try {
        // Those noted below the child, once this program's children: a pidfd names one process,
        // so nothing else is needed to tell a zombie of theirs (which has no environment, and
        // may have a group and session of its own) from one of the program's.
        for (auto it = noted_.begin(); it != noted_.end();) {
            siginfo_t info{};
            if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(it->pidfd), &info,
                         WEXITED | WNOHANG | WNOWAIT) != 0) {
                ++it; // ECHILD: not a child of this program yet (its parent lives), or reaped
                continue;
            }
            const auto [pid, pidfd] = *it;
            it = noted_.erase(it);
            const auto stat = process_stat(pid);
            found = true;
            take(pid, pidfd, stat ? &*stat : nullptr, info.si_pid == 0);
        }
        for (const pid_t pid : child_processes()) {
            if (pid == child_ || is_noted(pid) ||
                std::any_of(pending_.begin(), pending_.end(),
                            [pid](const child_by_pidfd& p) { return p.pid == pid; }))
                continue;
            // Opened before the process is looked at: every action below goes through it, so
            // a pid that is reaped elsewhere and reused meanwhile is never hit.
            const int pidfd = above_stdio(pidfd_of(pid));
            if (pidfd < 0)
                continue;
            const auto stat = process_stat(pid);
            const bool alive = stat && stat->state != 'Z' && stat->state != 'X';
            const auto ours =
                stat && stat->ppid == self_ ? attributed(stat->pgrp, stat->sid, pid, alive) : false;
            if (!ours || !*ours) {
                // Only one that left this program's session is looked at again: a sibling
                // warden is starting right now is in it, and shows no environment while it
                // execs.
                if (!ours && stat->sid != own_sid_)
                    undecided_ = true;
                ::close(pidfd);
                continue;
            }
            found = true;
            take(pid, pidfd, &*stat, alive);
        }
    } catch (...) {
        // Out of memory: what was found is handled, the rest is left.
    }
    return found;
}

void descendant_sweep::take(pid_t pid, int pidfd, const proc_stat* stat, bool alive) {
    try {
        pending_.push_back({pid, pidfd});
    } catch (...) {
        ::close(pidfd); // out of memory: left to the program
        throw;
    }
    if (!alive)
        return;
    // Named while it runs (a killed process's command line is gone), and killed whatever
    // happens to the naming.
    try {
        if (stat && stat->pgrp == child_)
            killed_in_group_.push_back(pid);
        if (std::find(seen_.begin(), seen_.end(), pid) == seen_.end()) {
            seen_.push_back(pid);
            if (named_.size() < max_named)
                named_.push_back(fmt::format(
                    "pid {} ({})", pid,
                    command_line(pid, stat ? std::optional<proc_stat>(*stat) : std::nullopt)));
            else
                ++unnamed_;
        }
        // Its zombie, and those of processes that share its session or group, can be told
        // apart without an environment. Never the program's own session or group.
        if (stat && stat->sid != own_sid_ &&
            std::find(sessions_.begin(), sessions_.end(), stat->sid) == sessions_.end())
            sessions_.push_back(stat->sid);
        if (stat && stat->pgrp != own_pgrp_ &&
            std::find(groups_.begin(), groups_.end(), stat->pgrp) == groups_.end())
            groups_.push_back(stat->pgrp);
    } catch (...) {
        // Out of memory: killed, unnamed.
    }
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
}

void descendant_sweep::reap_pending(std::chrono::milliseconds wait) noexcept {
    if (wait_for_an_end(pending_, wait))
        reap_ended(pending_);
}

void descendant_sweep::finish(std::chrono::milliseconds budget) noexcept {
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto deadline = start + budget;
    for (;;) {
        while (!pending_.empty()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
            if (left.count() <= 0)
                break;
            reap_pending(left);
        }
        if (!pending_.empty() || clock::now() >= deadline)
            break;
        // The ends just reaped made orphans of their own children: those are here now.
        if (round())
            continue;
        // A process caught in the middle of an exec shows no environment for a moment; one
        // whose environment is empty shows none ever, so it is asked again only briefly.
        if (!undecided_ || clock::now() >= start + undecided_budget)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    unfinished_ = pending_.size();
    for (const auto& p : pending_)
        keep_killed(p.pid, p.pidfd);
    pending_.clear();
}

descendant_sweep::~descendant_sweep() {
    close_all(pending_);
    close_all(noted_);
}

std::vector<std::string> descendant_sweep::left_running() const {
    std::vector<std::string> out = named_;
    if (unnamed_ > 0)
        out.push_back(fmt::format("and {} more", unnamed_));
    return out;
}

} // namespace warden::detail
