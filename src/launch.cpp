// Launching a child process: descriptors, the launch plan (input checks, PATH lookup, the
// environment) and posix_spawn. Why posix_spawn and not Boost.Process: process.cpp.

#include <warden/process.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include "core.hpp"
#include "descendants.hpp"
#include "process_state.hpp"
#include "registry.hpp"

namespace warden::detail {

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
    if (this != &other) {
        reset();
        fd_ = other.release();
    }
    return *this;
}

unique_fd::~unique_fd() {
    reset();
}

int unique_fd::release() noexcept {
    return std::exchange(fd_, -1);
}

void unique_fd::reset() noexcept {
    if (fd_ >= 0)
        ::close(std::exchange(fd_, -1));
}

int above_stdio(int fd) noexcept {
    if (fd < 0 || fd > STDERR_FILENO)
        return fd;
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    const int saved_errno = errno;
    ::close(fd);
    errno = saved_errno;
    return moved;
}

pipe_pair make_pipe(const char* what) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw spawn_error(std::error_code(errno, std::system_category()), what,
                          "cannot create a pipe");
    pipe_pair pipe{unique_fd(above_stdio(fds[0])), unique_fd(above_stdio(fds[1]))};
    if (pipe.read.get() < 0 || pipe.write.get() < 0)
        throw spawn_error(std::error_code(errno, std::system_category()), what,
                          "cannot create a pipe");
    return pipe;
}

int open_pidfd(int pid) noexcept {
    // Close-on-exec by definition (pidfd_open(2)).
    return above_stdio(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

namespace {

[[noreturn]] void bad_input(int error, std::string argument, const std::string& detail) {
    throw spawn_error(std::error_code(error, std::system_category()), std::move(argument), detail);
}

bool has_nul(const std::string& s) {
    return s.find('\0') != std::string::npos;
}

// The checks execve would make, done in the parent so that each failure names its cause.
void check_program(const std::string& path, const std::string& shown) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        bad_input(errno, "argv[0]", fmt::format("program `{}`", shown));
    if (S_ISDIR(st.st_mode))
        bad_input(EISDIR, "argv[0]", fmt::format("program `{}`", shown));
    if (!S_ISREG(st.st_mode))
        bad_input(EACCES, "argv[0]", fmt::format("program `{}` is not a regular file", shown));
    if (::access(path.c_str(), X_OK) != 0)
        bad_input(errno, "argv[0]", fmt::format("program `{}` is not executable", shown));
}

std::string search_path(const std::string& name, const std::string& path_list) {
    std::string not_executable;
    std::size_t start = 0;
    for (;;) {
        const auto end = path_list.find(':', start);
        const auto entry = std::string_view(path_list).substr(
            start, end == std::string::npos ? std::string_view::npos : end - start);
        // POSIX: an empty PATH entry is the current directory.
        const std::string_view dir = entry.empty() ? std::string_view(".") : entry;
        // Views appended, no string assigned or added: on those, g++ 12 at -O3 gives a false
        // -Wrestrict (GCC PR 105329), an error under -Werror.
        std::string candidate;
        candidate.reserve(dir.size() + 1 + name.size());
        candidate.append(dir).append(1, '/').append(name);
        struct stat st {};
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            if (::access(candidate.c_str(), X_OK) == 0)
                return std::filesystem::absolute(candidate).string();
            if (not_executable.empty())
                not_executable = candidate;
        }
        if (end == std::string::npos)
            break;
        start = end + 1;
    }
    if (!not_executable.empty())
        bad_input(EACCES, "argv[0]",
                  fmt::format("program `{}` found in PATH as `{}`, which is not executable", name,
                              not_executable));
    bad_input(ENOENT, "argv[0]", fmt::format("program `{}` not found in PATH={}", name, path_list));
}

} // namespace

launch_plan plan_launch(const process_options& options) {
    if (options.argv.empty())
        bad_input(EINVAL, "argv", "empty argv, no program to run");
    for (std::size_t i = 0; i < options.argv.size(); ++i)
        if (has_nul(options.argv[i]))
            bad_input(EINVAL, fmt::format("argv[{}]", i), "argument contains a NUL byte");
    const std::string& program = options.argv[0];
    if (program.empty())
        bad_input(ENOENT, "argv[0]", "empty program name");

    launch_plan plan;
    if (options.env) {
        plan.env.reserve(options.env->size());
        for (const auto& [key, value] : *options.env) {
            if (key.empty())
                bad_input(EINVAL, "env", "environment variable with an empty name");
            if (key.find('=') != std::string::npos)
                bad_input(EINVAL, "env",
                          fmt::format("environment variable name `{}` contains '='", key));
            if (has_nul(key) || has_nul(value))
                bad_input(EINVAL, "env",
                          fmt::format("environment variable `{}` contains a NUL byte", key));
            plan.env.push_back(key + "=" + value);
        }
        plan.replace_env = true;
    }

    if (options.cwd) {
        const std::string cwd = options.cwd->string();
        struct stat st {};
        if (cwd.empty() || has_nul(cwd))
            bad_input(ENOENT, "cwd", fmt::format("working directory `{}`", cwd));
        if (::stat(cwd.c_str(), &st) != 0)
            bad_input(errno, "cwd", fmt::format("working directory `{}`", cwd));
        if (!S_ISDIR(st.st_mode))
            bad_input(ENOTDIR, "cwd", fmt::format("working directory `{}`", cwd));
        if (::access(cwd.c_str(), X_OK) != 0)
            bad_input(errno, "cwd", fmt::format("working directory `{}`", cwd));
        plan.cwd = cwd;
    }

    if (program.find('/') != std::string::npos) {
        // The child changes directory before exec: a relative path means relative to cwd, and
        // is passed on as written (a script's $0 is what the user wrote).
        std::filesystem::path path(program);
        if (path.is_relative() && options.cwd)
            path = *options.cwd / path;
        check_program(path.string(), program);
        plan.program = program;
    } else {
        // The child's PATH if the environment is replaced and sets one, else ours.
        std::string path_list;
        if (options.env && options.env->contains("PATH"))
            path_list = options.env->at("PATH");
        else if (const char* ours = std::getenv("PATH"))
            path_list = ours;
        else
            path_list = "/bin:/usr/bin";
        plan.program = search_path(program, path_list);
    }
    return plan;
}

std::string origin_entry(const supervisor_core& core, const child_record& record) noexcept {
    try {
        const origin o{record.where(),
                       {},
                       record.test() ? *record.test() : std::string(),
                       record.parent(),
                       core.options().name,
                       outer_origin()};
        return std::string(origin_variable) + "=" + origin_value(o);
    } catch (...) {
        return {};
    }
}

bool is_origin_entry(const char* entry) noexcept {
    return std::string_view(entry).starts_with(origin_variable) &&
           entry[origin_variable.size()] == '=';
}

namespace {

// The child's environment, null-terminated, or nullopt when it is simply ours: the given one
// or ours, with our WARDEN_ORIGIN in place of any it had (ours names the spawn, then chains
// the one we were given), and our WARDEN_LINEAGE in place of any (it chains ours; a given one
// is not warden's).
std::optional<std::vector<char*>> child_environment(const launch_plan& plan,
                                                    const std::string& origin_entry,
                                                    const std::string& lineage_entry) {
    if (!plan.replace_env && origin_entry.empty() && lineage_entry.empty())
        return std::nullopt;
    std::vector<char*> env;
    if (plan.replace_env) {
        env.reserve(plan.env.size() + 3);
        for (const auto& e : plan.env)
            if (lineage_entry.empty() || !is_lineage_entry(e.c_str()))
                env.push_back(const_cast<char*>(e.c_str()));
    } else {
        for (char** e = environ; *e != nullptr; ++e)
            if (!(!origin_entry.empty() && is_origin_entry(*e)) &&
                !(!lineage_entry.empty() && is_lineage_entry(*e)))
                env.push_back(*e);
    }
    if (!origin_entry.empty())
        env.push_back(const_cast<char*>(origin_entry.c_str()));
    if (!lineage_entry.empty())
        env.push_back(const_cast<char*>(lineage_entry.c_str()));
    env.push_back(nullptr);
    return env;
}

} // namespace

too_long_input exec_too_long(const launch_plan& plan, const std::vector<std::string>& argv,
                             const std::string& origin_entry, const std::string& lineage_entry) {
    // The kernel's bound on one string, its NUL included (MAX_ARG_STRLEN: 32 pages).
    const std::size_t max_string = 32 * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    for (std::size_t i = 0; i < argv.size(); ++i)
        if (argv[i].size() + 1 > max_string)
            return {fmt::format("argv[{}]", i),
                    fmt::format("argv[{}] is {} bytes; exec takes at most {} bytes an argument", i,
                                argv[i].size(), max_string - 1)};
    // What launch() gave exec.
    const auto given = child_environment(plan, origin_entry, lineage_entry);
    std::vector<std::string_view> env;
    for (char* const* e = given ? given->data() : environ; *e != nullptr; ++e)
        env.emplace_back(*e);
    for (const auto entry : env)
        if (entry.size() + 1 > max_string)
            return {"env",
                    fmt::format("environment variable {} is {} bytes; exec takes at most {} bytes "
                                "a variable",
                                entry.substr(0, std::min<std::size_t>(entry.find('='), 64)),
                                entry.size(), max_string - 1)};
    auto bytes = [](const auto& strings) {
        std::size_t total = 0;
        for (const auto& s : strings)
            total += s.size() + 1 + sizeof(char*);
        return total;
    };
    return {"argv",
            fmt::format("argv ({} arguments, {} bytes) and the environment ({} variables, {} "
                        "bytes), a pointer each included, exceed exec's limit of {} bytes "
                        "(sysconf(_SC_ARG_MAX): a quarter of the stack's size limit)",
                        argv.size(), bytes(argv), env.size(), bytes(env), ::sysconf(_SC_ARG_MAX))};
}

int launch(const launch_plan& plan, const std::vector<std::string>& argv, int output_fd, int& pid,
           const std::string& origin_entry, const std::string& lineage_entry) {
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    auto env = child_environment(plan, origin_entry, lineage_entry);

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    if (int err = ::posix_spawn_file_actions_init(&actions))
        return err;
    if (int err = ::posix_spawnattr_init(&attr)) {
        ::posix_spawn_file_actions_destroy(&actions);
        return err;
    }
    int err = 0;
    auto step = [&](int result) {
        if (err == 0)
            err = result;
    };
    // stdout and stderr share one pipe, so the tail keeps their interleaving; stdin is
    // /dev/null, so a child never reads the test runner's terminal. Then nothing above 2.
    step(::posix_spawn_file_actions_adddup2(&actions, output_fd, STDOUT_FILENO));
    step(::posix_spawn_file_actions_adddup2(&actions, output_fd, STDERR_FILENO));
    step(::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0));
    if (plan.cwd)
        step(::posix_spawn_file_actions_addchdir_np(&actions, plan.cwd->c_str()));
    step(::posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1));
    // Its own process group (so a cancel reaches a shell's children too), default signal
    // dispositions and an empty mask, whatever the spawning thread had.
    sigset_t none;
    sigset_t all;
    sigemptyset(&none);
    sigfillset(&all);
    step(::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF));
    step(::posix_spawnattr_setpgroup(&attr, 0));
    step(::posix_spawnattr_setsigmask(&attr, &none));
    step(::posix_spawnattr_setsigdefault(&attr, &all));
    if (err == 0) {
        pid_t child = -1;
        err = ::posix_spawn(&child, plan.program.c_str(), &actions, &attr, args.data(),
                            env ? env->data() : environ);
        pid = child;
    }
    ::posix_spawnattr_destroy(&attr);
    ::posix_spawn_file_actions_destroy(&actions);
    return err;
}

} // namespace warden::detail
