#pragma once

// The descendants of a supervised process that outlive it: made this program's children by
// PR_SET_CHILD_SUBREAPER, told apart from the program's own children, named, killed and
// reaped when their warden child ends. docs/processes.md ("Descendants") tells the story.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

namespace warden::detail {

struct proc_stat;

// The variable every spawned or forked child gets, and its descendants inherit: tokens
// "<warden pid>.<child serial>", the newest first, the rest being this program's own value
// when a warden started it too.
inline constexpr std::string_view lineage_variable = "WARDEN_LINEAGE";

// Makes this process the subreaper of its descendants, once per process (a fork's child is
// not one: the attribute is not inherited). False, with a warning logged once, when the
// kernel refuses: orphans then go to init, as without it.
bool become_subreaper() noexcept;

// A fresh token for a child about to be started, "<getpid()>.<serial>".
std::string new_lineage_token();
// "WARDEN_LINEAGE=<token>[ <this program's own WARDEN_LINEAGE>]".
std::string lineage_entry(const std::string& token);
bool is_lineage_entry(const char* entry) noexcept;

// The pids of children warden started and has not reaped yet: never an orphan to attribute.
void note_child(pid_t pid);
void forget_child(pid_t pid) noexcept;

// A child of this program, reached only through a pidfd opened while it was known to be one:
// a pid reaped elsewhere and reused is never signalled or waited for.
struct child_by_pidfd {
    pid_t pid;
    int pidfd;
};

// The processes below one child when warden signalled its group. A member inside setsid() or
// setpgid() when the signal comes gets it, yet dies in a group and session of its own, and
// its zombie has no environment: after that only a pidfd taken before names it as the
// child's (docs/processes.md, "Descendants", rule 4). The pidfds are the program's
// descriptors too, so they count against a budget: at most `max_per_child` per child, and
// across the program a quarter of RLIMIT_NOFILE's soft limit, 256 at most.
class noted_descendants {
  public:
    static constexpr std::size_t max_per_child = 64;

    noted_descendants() = default;
    ~noted_descendants() { clear(); }
    noted_descendants(const noted_descendants&) = delete;
    noted_descendants& operator=(const noted_descendants&) = delete;

    // Adds those below `leader` now, each by a pidfd opened while it was one: the processes
    // under it (/proc/<pid>/task/*/children, all the way down), and this program's children in
    // its process group (orphans reparented here while it ran) with theirs. None twice.
    void note(pid_t leader) noexcept;
    // Adds those under `roots` (not the roots), all the way down: where the leader has ended
    // and a sweep has found the members of its group that are this program's children.
    void note_under(const std::vector<pid_t>& roots) noexcept;
    // Hands the pidfds over (to a sweep, for its short life), returning their budget.
    std::vector<child_by_pidfd> release() noexcept;
    // Closes them.
    void clear() noexcept;
    std::size_t size() const noexcept { return list_.size(); }

  private:
    void walk(std::vector<pid_t> below);

    std::vector<child_by_pidfd> list_;
};

// Closes the pidfds of `processes` and empties it.
void close_all(std::vector<child_by_pidfd>& processes) noexcept;

// Descendants that a sweep killed but that had not ended when its budget ran out (a process
// the scheduler did not run in time, or one stuck in the kernel) are kept, not abandoned: each
// later sweep reaps those that have ended since, and a supervisor's end waits for them.
// Keeps `pid`, a child of this program that was sent SIGKILL, reached through `pidfd` (which it
// takes), until it is reaped.
void keep_killed(pid_t pid, int pidfd) noexcept;
// Reaps the kept ones that have ended, waiting up to `wait` for the rest; returns how many are
// still kept.
std::size_t reap_killed_descendants(std::chrono::milliseconds wait) noexcept;

// What was left of one child's descendants when it ended. Every process it touches is a child
// of this program (so its pid is pinned until reaped), is reached through a pidfd opened
// before it is examined, and is attributed to the ended child by one of: its process group
// (the child's, or one recorded below), its session (recorded from one attributed alive, never
// this program's own), or the child's token in its /proc/<pid>/environ. Anything else is the
// rest of the program's, and is neither signalled nor reaped.
class descendant_sweep {
  public:
    descendant_sweep(pid_t child, std::string token);
    ~descendant_sweep();
    descendant_sweep(const descendant_sweep&) = delete;
    descendant_sweep& operator=(const descendant_sweep&) = delete;

    // Processes seen below the child before its group was signalled (noted_descendants), which
    // the sweep takes (and closes): each is attributed by its pidfd alone once it is a child of
    // this program, zombie or not.
    void add_noted(std::vector<child_by_pidfd> noted) noexcept;
    // While the child is dead but unreaped: names and kills the attributed orphans already
    // here, before the child's group is killed (so they are seen alive).
    void first_round() noexcept;
    // After the reap: waits for the killed ones to end, reaps them, and takes on the orphans
    // their ends made, round after round until none is left or `budget` has passed.
    void finish(std::chrono::milliseconds budget) noexcept;

    // "pid 1234 (sleep 1000)" for each process found running, at most `max_named`, then
    // "and N more".
    std::vector<std::string> left_running() const;
    // Attributed processes killed but not ended within the budget: kept until they end
    // (reap_killed_descendants).
    std::size_t unfinished() const noexcept { return unfinished_; }
    // Members of the child's group that first_round() found running among this program's
    // children, and killed: the group's SIGKILL reaches only what is below them.
    const std::vector<pid_t>& killed_in_group() const noexcept { return killed_in_group_; }

    static constexpr std::size_t max_named = 16;

  private:
    // One look at this program's children; true if it found something attributed.
    bool round() noexcept;
    // Names (if alive), kills and keeps for reaping `pid`, attributed; takes `pidfd`.
    void take(pid_t pid, int pidfd, const proc_stat* stat, bool alive);
    void reap_pending(std::chrono::milliseconds wait) noexcept;
    // Not known (nullopt) when its environment cannot be read, as in the middle of an exec.
    std::optional<bool> attributed(pid_t pgrp, pid_t sid, pid_t pid, bool alive) const;

    const pid_t child_;
    const std::string token_;
    const pid_t self_;
    const pid_t own_pgrp_;
    const pid_t own_sid_;
    std::vector<pid_t> groups_;
    std::vector<pid_t> sessions_;
    std::vector<pid_t> seen_;
    std::vector<pid_t> killed_in_group_;
    std::vector<std::string> named_;
    std::size_t unnamed_ = 0;
    std::vector<child_by_pidfd> noted_; // add_noted's, not yet children of this program
    std::vector<child_by_pidfd> pending_;
    std::size_t unfinished_ = 0;
    bool undecided_ = false; // the last round met a process it could not tell about
};

} // namespace warden::detail
