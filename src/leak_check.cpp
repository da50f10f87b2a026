#include "leak_check.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <optional>
#include <system_error>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <warden/fixtures.hpp>

#include "fork_safe.hpp"
#include "json.hpp"

namespace warden::detail {

namespace fs = std::filesystem;

namespace {

std::optional<pid_t> parse_id(std::string_view text) {
    pid_t id = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (error != std::errc() || end != text.data() + text.size())
        return std::nullopt;
    return id;
}

std::string state_name(char state) {
    switch (state) {
    case 'R':
        return "R (running)";
    case 'S':
        return "S (sleeping)";
    case 'D':
        return "D (disk sleep)";
    case 'T':
        return "T (stopped)";
    case 't':
        return "t (tracing stop)";
    case 'Z':
        return "Z (exited, not reaped)";
    case 'X':
        return "X (dead)";
    default:
        return std::string(1, state);
    }
}

std::string wchan(const fs::path& dir) {
    std::string text = read_proc_file(dir / "wchan");
    return text == "0" ? std::string() : text;
}

std::mutex kept_mutex;
[[maybe_unused]] const bool kept_held_across_fork = (hold_across_fork(kept_mutex), true);
std::vector<pid_t> kept;

} // namespace

std::string read_proc_file(const fs::path& path, std::size_t limit) {
    return read_proc_file_at(AT_FDCWD, path.c_str(), limit);
}

std::string read_proc_file_at(int directory, const char* path, std::size_t limit) {
    std::string out;
    const int fd = ::openat(directory, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return out;
    char buffer[4096];
    while (out.size() < limit) {
        const ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, limit - out.size()));
        if (n > 0)
            out.append(buffer, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EINTR)
            break;
    }
    ::close(fd);
    return out;
}

// "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses, so the
// fields after it are found from the last ')'.
std::optional<proc_stat> read_proc_stat(const fs::path& stat_file) {
    const std::string text = read_proc_file(stat_file);
    const auto open = text.find('(');
    const auto close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open)
        return std::nullopt;
    proc_stat s;
    s.comm = text.substr(open + 1, close - open - 1);
    long ppid = 0;
    long pgrp = 0;
    long sid = 0;
    if (std::sscanf(text.c_str() + close + 1, " %c %ld %ld %ld", &s.state, &ppid, &pgrp, &sid) != 4)
        return std::nullopt;
    s.ppid = static_cast<pid_t>(ppid);
    s.pgrp = static_cast<pid_t>(pgrp);
    s.sid = static_cast<pid_t>(sid);
    return s;
}

std::optional<proc_stat> process_stat(pid_t pid) {
    return read_proc_stat(fs::path("/proc") / std::to_string(pid) / "stat");
}

std::string command_line(pid_t pid, const std::optional<proc_stat>& stat) {
    std::string command = read_proc_file(fs::path("/proc") / std::to_string(pid) / "cmdline");
    while (!command.empty() && command.back() == '\0')
        command.pop_back();
    std::replace(command.begin(), command.end(), '\0', ' ');
    // An exited child has no command line left: its name is all the kernel keeps.
    if (command.empty() && stat)
        command = "[" + stat->comm + "]";
    return command;
}

std::vector<pid_t> child_processes() {
    return children_of(::getpid());
}

std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    std::error_code error;
    // /proc/self/task/<tid>/children (CONFIG_PROC_CHILDREN) names the children each thread
    // forked, at the cost of one read per thread; without it every process's stat is read.
    static const bool children_listed =
        fs::exists(fs::path("/proc/self/task") / std::to_string(::gettid()) / "children", error);
    if (children_listed) {
        // With plain system calls: a process child's exit runs this twice on the way to its
        // parent (src/descendants.cpp), and a directory_iterator and an ifstream per thread
        // took half as long again (bench/README.md, spawn_process).
        char tasks_path[64];
        std::snprintf(tasks_path, sizeof tasks_path, "/proc/%d/task", static_cast<int>(parent));
        DIR* tasks = ::opendir(tasks_path);
        if (tasks == nullptr)
            return out;
        while (const dirent* task = ::readdir(tasks)) {
            if (!parse_id(task->d_name))
                continue;
            char name[sizeof task->d_name + sizeof "/children"];
            std::snprintf(name, sizeof name, "%s/children", task->d_name);
            const std::string list = read_proc_file_at(::dirfd(tasks), name);
            for (const char *at = list.data(), *end = at + list.size(); at < end;) {
                pid_t pid = 0;
                const auto parsed = std::from_chars(at, end, pid);
                if (parsed.ec != std::errc())
                    break;
                out.push_back(pid);
                at = parsed.ptr;
                while (at < end && *at == ' ')
                    ++at;
            }
        }
        ::closedir(tasks);
        return out;
    }
    for (const auto& entry : fs::directory_iterator("/proc", error)) {
        const auto pid = parse_id(entry.path().filename().native());
        if (!pid)
            continue;
        if (const auto stat = read_proc_stat(entry.path() / "stat"); stat && stat->ppid == parent)
            out.push_back(*pid);
    }
    return out;
}

std::vector<pid_t> threads() {
    std::vector<pid_t> out;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator("/proc/self/task", error))
        if (const auto tid = parse_id(entry.path().filename().native()))
            out.push_back(*tid);
    return out;
}

bool thread_listed(pid_t tid) {
    std::error_code error;
    return fs::exists(fs::path("/proc/self/task") / std::to_string(tid), error);
}

bool is_kept_thread(pid_t tid) {
    std::lock_guard lock(kept_mutex);
    return std::find(kept.begin(), kept.end(), tid) != kept.end();
}

void keep_thread(pid_t tid) {
    std::lock_guard lock(kept_mutex);
    // A kept thread that ended left its tid here, and the kernel may give it to a new thread;
    // drop those first so that a reused tid is not excluded for good.
    std::erase_if(kept, [](pid_t old) { return !thread_listed(old); });
    kept.push_back(tid);
}

leak inspect_process(pid_t pid) {
    const fs::path dir = fs::path("/proc") / std::to_string(pid);
    leak out{leak::kind::process, pid, {}, {}, {}, {}};
    const auto stat = read_proc_stat(dir / "stat");
    out.name = command_line(pid, stat);
    out.state = stat ? state_name(stat->state) : "gone";
    out.waiting_in = wchan(dir);
    return out;
}

std::vector<std::pair<pid_t, pid_t>> process_table() {
    std::vector<std::pair<pid_t, pid_t>> table;
    std::error_code error;
    for (const auto& entry : fs::directory_iterator("/proc", error)) {
        const auto pid = parse_id(entry.path().filename().native());
        if (!pid)
            continue;
        if (const auto stat = read_proc_stat(entry.path() / "stat"))
            table.emplace_back(stat->ppid, *pid);
    }
    std::sort(table.begin(), table.end());
    return table;
}

// Parent links, not process groups: a descendant that left the group or daemonised under a
// subreaper is still found.
std::vector<pid_t> descendants(pid_t root, const std::vector<std::pair<pid_t, pid_t>>& table) {
    std::vector<pid_t> out;
    std::vector<pid_t> next{root};
    // A pid is taken at most once, so a table read while processes came and went (a cycle of
    // recycled pids) still ends.
    while (!next.empty()) {
        const pid_t parent = next.back();
        next.pop_back();
        auto it = std::lower_bound(table.begin(), table.end(), std::pair<pid_t, pid_t>(parent, 0));
        for (; it != table.end() && it->first == parent; ++it) {
            if (it->second == root || std::find(out.begin(), out.end(), it->second) != out.end())
                continue;
            out.push_back(it->second);
            next.push_back(it->second);
        }
    }
    return out;
}

leak inspect_thread(pid_t tid) {
    const fs::path dir = fs::path("/proc/self/task") / std::to_string(tid);
    leak out{leak::kind::thread, tid, {}, {}, {}, {}};
    std::string name = read_proc_file(dir / "comm");
    if (!name.empty() && name.back() == '\n')
        name.pop_back();
    out.name = std::move(name);
    const auto stat = read_proc_stat(dir / "stat");
    out.state = stat ? state_name(stat->state) : "gone";
    out.waiting_in = wchan(dir);
    return out;
}

std::string leak::to_string() const {
    std::string out = what == kind::process
                          ? fmt::format("child process pid {}: {}, {}", id, name, state)
                          : fmt::format("thread tid {} \"{}\": {}", id, name, state);
    if (!waiting_in.empty())
        out += fmt::format(", waiting in {}", waiting_in);
    if (!stack.empty())
        out += "\n  stack:\n" + stack;
    return out;
}

std::string leak::to_json() const {
    return json_object()
        .field("leak", what == kind::process ? "process" : "thread")
        .field(what == kind::process ? "pid" : "tid", static_cast<long long>(id))
        .field(what == kind::process ? "command" : "name", name)
        .field("state", state)
        .field("waiting_in", waiting_in)
        .field("stack", stack)
        .str();
}

} // namespace warden::detail

namespace warden::fixtures {

void keep_this_thread() {
    detail::keep_thread(::gettid());
}

} // namespace warden::fixtures
