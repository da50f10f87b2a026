#pragma once

// What a test left behind, read from /proc: the child processes of this process (running or
// exited and unreaped) and its threads. The fixtures' leak check (src/test_fixture.cpp)
// compares two snapshots; docs/test-frameworks.md says what is excluded and why.

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace warden::detail {

// A /proc file, whole up to `limit` bytes; empty if it cannot be read.
std::string read_proc_file(const std::filesystem::path& path, std::size_t limit = 1 << 20);
// The same, for `path` relative to the open directory `directory`.
std::string read_proc_file_at(int directory, const char* path, std::size_t limit = 1 << 20);

// The fields of /proc/<pid>/stat (or /proc/self/task/<tid>/stat) that warden reads.
struct proc_stat {
    std::string comm;
    char state = '?';
    pid_t ppid = 0;
    pid_t pgrp = 0;
    pid_t sid = 0; // the session
};
std::optional<proc_stat> read_proc_stat(const std::filesystem::path& stat_file);
// The same for /proc/<pid>/stat.
std::optional<proc_stat> process_stat(pid_t pid);

// A process's command line, its arguments joined by spaces; "[comm]" (from `stat`) once it has
// none left (an exited child, a kernel thread); empty if neither can be read.
std::string command_line(pid_t pid, const std::optional<proc_stat>& stat);

// Children of this process, zombies included, in no particular order.
std::vector<pid_t> child_processes();
// Children of `parent`, zombies included; empty once it has ended (its children are then
// someone else's).
std::vector<pid_t> children_of(pid_t parent);
// Threads of this process (tids), in no particular order.
std::vector<pid_t> threads();
// True while /proc/self/task/<tid> is listed (a joined thread may stay listed briefly).
bool thread_listed(pid_t tid);

// Threads marked by fixtures::keep_this_thread() or by warden itself (its symbolising thread).
bool is_kept_thread(pid_t tid);
void keep_thread(pid_t tid);

// One thing a test left behind.
struct leak {
    enum class kind { process, thread } what;
    pid_t id;
    std::string name;       // a process's command line, a thread's name
    std::string state;      // as the kernel reports it, e.g. "S (sleeping)"
    std::string waiting_in; // the kernel function it sleeps in (wchan), if any
    std::string stack;      // a thread's live stack, when it can be captured

    std::string to_string() const;
    std::string to_json() const;
};

leak inspect_process(pid_t pid);
// Every process's (parent pid, pid), sorted, from one reading of every /proc/<pid>/stat.
std::vector<std::pair<pid_t, pid_t>> process_table();
// The processes below `root` in `table` (children, their children, ...), parents before
// their children.
std::vector<pid_t> descendants(pid_t root, const std::vector<std::pair<pid_t, pid_t>>& table);
// A thread of this process: name, state and what it waits in, from /proc.
leak inspect_thread(pid_t tid);
// The live stack of a thread of this process, innermost first, asked of the thread by a
// signal (dump.cpp); says so instead when the thread does not answer within 200 ms.
std::string thread_stack(pid_t tid);

} // namespace warden::detail
