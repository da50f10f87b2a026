// Hang reports: where every child is now, what finished recently, and the signal that prints
// it all. The design is in docs/hang-reports.md.

#include <warden/dump.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <fmt/format.h>

#include "core.hpp"
#include "coroutine_child.hpp"
#include "fork_safe.hpp"
#include "leak_check.hpp"
#include "lines.hpp"
#include "process_state.hpp"
#include "registry.hpp"
#include "stack.hpp"

namespace warden::detail {

namespace {

using clock_type = std::chrono::steady_clock;

// How many lines of a process's output the dump shows, of the output_tail it keeps.
constexpr std::size_t dump_output_lines = 8;
// How many descendants of one process the dump names.
constexpr std::size_t dump_descendants = 16;

struct supervisor_list {
    std::mutex mutex;
    std::list<std::weak_ptr<supervisor_core>> cores; // in creation order
};

// Never destroyed: a supervisor may end during exit's static destructors.
supervisor_list& supervisors() {
    static auto* list = [] {
        auto* made = new supervisor_list;
        hold_across_fork(made->mutex); // a supervisor made in a forked child enlists
        return made;
    }();
    return *list;
}

std::string seconds(clock_type::duration d) {
    return fmt::format("{:.3f} s", std::chrono::duration<double>(d).count());
}

// Each line of `text` after a line break and `indent`: the dump's lines end where the next begins.
void append_indented(std::string& out, std::string_view text, std::string_view indent) {
    for_each_line(text,
                  [&](std::string_view line) { out.append(1, '\n').append(indent).append(line); });
}

std::string first_line_of(std::string_view text) {
    return std::string(text.substr(0, text.find('\n')));
}

std::string outcome_of(const finished_child& f) {
    std::string out;
    if (f.status) {
        const int s = *f.status;
        if (WIFEXITED(s))
            out = fmt::format("exited {}", WEXITSTATUS(s));
        else if (WIFSIGNALED(s))
            out = fmt::format("killed by {}{}", signal_name(WTERMSIG(s)),
                              WCOREDUMP(s) ? " (core dumped)" : "");
    }
    auto add = [&](std::string_view what) {
        if (!out.empty())
            out += ", ";
        out += what;
    };
    if (f.end == child_end::cancelled) {
        add("cancelled");
    } else if (f.end == child_end::failed) {
        const auto d = describe_exception(f.error);
        add(d.what == d.type ? fmt::format("failed with {}", d.type)
                             : fmt::format("failed with {}: {}", d.type, first_line_of(d.what)));
    } else if (out.empty()) {
        out = f.cancel_requested ? "succeeded after its cancellation" : "succeeded";
    }
    return out;
}

std::string process_now(const process_state& state,
                        const std::vector<std::pair<pid_t, pid_t>>& table) {
    const int pid = state.pid();
    const auto self = inspect_process(pid);
    std::string out = fmt::format("pid {}: {}", pid, self.state);
    if (!self.waiting_in.empty())
        out += fmt::format(", waiting in {}", self.waiting_in);
    if (!self.name.empty())
        out += fmt::format("\ncommand: {}", self.name);
    const auto below = descendants(pid, table);
    if (!below.empty()) {
        out += "\ndescendants:";
        for (std::size_t i = 0; i < below.size() && i < dump_descendants; ++i) {
            const auto d = inspect_process(below[i]);
            out += fmt::format("\n  pid {}: {}, {}", d.id, d.name, d.state);
            if (!d.waiting_in.empty())
                out += fmt::format(", waiting in {}", d.waiting_in);
        }
        if (below.size() > dump_descendants)
            out += fmt::format("\n  ... and {} more", below.size() - dump_descendants);
    }
    const auto tail = state.output_tail();
    if (tail.empty()) {
        out += "\nno output yet";
    } else {
        out += "\nlast output:";
        const std::size_t from =
            tail.size() > dump_output_lines ? tail.size() - dump_output_lines : 0;
        for (std::size_t i = from; i < tail.size(); ++i)
            out += "\n  " + tail[i];
    }
    return out;
}

// A thread child's stack, asked of the pool thread running it by a real-time signal. The
// handler fills the request and wakes the asker; a request whose thread did not answer in
// time is never freed (the handler may still run later, with a signal that was only
// blocked), so the handler never writes into freed memory.
struct stack_request {
    // Set (release) by the asker before the signal is sent and read (acquire) by the
    // handler: a signal sent with a raw syscall orders nothing for the memory model or for
    // ThreadSanitizer, so without it the handler's writes race with the request's creation.
    std::atomic<bool> asked{false};
    std::atomic<std::uint32_t> answered{0}; // a futex word
    int count = 0;
    void* pc = nullptr; // where the thread was interrupted
    std::array<void*, 64> frames{};
};

constexpr auto stack_answer_deadline = std::chrono::milliseconds(200);

int stack_signal() noexcept {
    // One the C library and Asio leave alone; glibc keeps SIGRTMIN-1 and below for itself.
    return SIGRTMIN + 5;
}

void on_stack_signal(int, siginfo_t* info, void* context) {
    const int saved = errno;
    if (info->si_code == SI_QUEUE && info->si_pid == ::getpid() &&
        info->si_value.sival_ptr != nullptr) {
        auto* r = static_cast<stack_request*>(info->si_value.sival_ptr);
        if (!r->asked.load(std::memory_order_acquire)) {
            errno = saved;
            return;
        }
        [[maybe_unused]] const auto* uc = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
        r->pc = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
        r->pc = reinterpret_cast<void*>(uc->uc_mcontext.pc);
#endif
        r->count = capture_frames_in_handler(r->frames.data(), static_cast<int>(r->frames.size()));
        // Release: the frames are visible to the asker that sees the flag.
        r->answered.store(1, std::memory_order_release);
        ::syscall(SYS_futex, &r->answered, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    }
    errno = saved;
}

void install_stack_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        prepare_signal_capture();
        struct sigaction action {};
        action.sa_sigaction = on_stack_signal;
        action.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&action.sa_mask);
        ::sigaction(stack_signal(), &action, nullptr);
    });
}

std::mutex abandoned_mutex;
[[maybe_unused]] const bool abandoned_held_across_fork = (hold_across_fork(abandoned_mutex), true);
std::vector<std::unique_ptr<stack_request>>& abandoned() {
    static auto* kept = new std::vector<std::unique_ptr<stack_request>>;
    return *kept;
}

bool ask_for_stack(int tid, stack_request& r) {
    siginfo_t info{};
    info.si_signo = stack_signal();
    info.si_code = SI_QUEUE;
    info.si_pid = ::getpid();
    info.si_uid = ::getuid();
    info.si_value.sival_ptr = &r;
    r.asked.store(true, std::memory_order_release);
    return ::syscall(SYS_rt_tgsigqueueinfo, ::getpid(), tid, stack_signal(), &info) == 0;
}

bool wait_for_answer(stack_request& r, clock_type::time_point deadline) {
    while (r.answered.load(std::memory_order_acquire) == 0) {
        const auto left = deadline - clock_type::now();
        if (left <= clock_type::duration::zero())
            return false;
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        timespec timeout{static_cast<time_t>(ns / 1'000'000'000),
                         static_cast<long>(ns % 1'000'000'000)};
        ::syscall(SYS_futex, &r.answered, FUTEX_WAIT_PRIVATE, 0, &timeout, nullptr, 0);
    }
    return true;
}

// The frames from where the thread was interrupted out to the user's body: the handler's
// own frames and the pool's machinery are not where it is stuck.
std::string stack_text(const stack_request& r) {
    std::size_t first = 0;
    const std::size_t count = static_cast<std::size_t>(std::max(r.count, 0));
    const auto* at = std::find(r.frames.begin(), r.frames.begin() + count, r.pc);
    if (at != r.frames.begin() + count)
        first = static_cast<std::size_t>(at - r.frames.begin());
    else
        first = std::min<std::size_t>(2, count); // the handler and the signal trampoline
    std::vector<const void*> frames(r.frames.begin() + first, r.frames.begin() + count);
    const std::string text = symbolise_frames(frames);
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        const std::string_view line(text.data() + start, end - start);
        if (line.find("warden::detail::blocking_job::operator()") != std::string_view::npos)
            break;
        if (!out.empty())
            out += '\n';
        out += line;
        start = end + 1;
    }
    return out;
}

// A name without its template arguments: Asio's operation frames are unreadable with them.
std::string without_template_arguments(std::string_view name) {
    std::string out;
    int depth = 0;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        // "operator<" and "operator<<" are names, not argument lists.
        if (c == '<' && !(i >= 8 && name.substr(i - 8, 8) == "operator")) {
            ++depth;
            continue;
        }
        if (c == '>' && depth > 0 && !(i >= 1 && name[i - 1] == '-')) {
            --depth;
            continue;
        }
        if (depth == 0)
            out += c;
    }
    return out;
}

// One frame of a symbolised await chain, as "outer(int) at file.cpp:12"; empty for warden's
// own frames. GCC names a coroutine's resume function after the coroutine, with the frame
// as its one parameter: "outer(outer(int)::_Z5outeri.Frame*)".
std::string coroutine_frame_line(std::string_view line) {
    const auto hash = line.find("# ");
    if (hash != std::string_view::npos && hash < 8)
        line.remove_prefix(hash + 2);
    std::string where;
    if (const auto at = line.rfind(" at "); at != std::string_view::npos) {
        where = std::string(line.substr(at));
        line = line.substr(0, at);
    } else if (const auto in = line.rfind(" in "); in != std::string_view::npos) {
        where = std::string(line.substr(in));
        line = line.substr(0, in);
    }
    std::string name(line);
    for (const std::string_view clone : {" [clone .actor]", " [clone .resume]"})
        if (const auto at = name.find(clone); at != std::string::npos)
            name.erase(at, clone.size());
    // The coroutine's own signature is the frame parameter's scope.
    if (const auto frame = name.rfind(".Frame*)"); frame != std::string::npos) {
        const auto scope = name.rfind("::_Z", frame);
        int depth = 0;
        std::size_t open = std::string::npos;
        for (std::size_t i = frame + 8; i-- > 0;) { // from the closing parenthesis back
            if (name[i] == ')')
                ++depth;
            else if (name[i] == '(' && --depth == 0) {
                open = i;
                break;
            }
        }
        if (scope != std::string::npos && open != std::string::npos && open < scope)
            name = name.substr(open + 1, scope - open - 1);
    }
    if (name.starts_with("warden::detail::run_"))
        return {};
    // Asio's frame for an operation awaited with use_awaitable: name the operation.
    constexpr std::string_view initiate = "boost::asio::async_result::initiate(";
    if (name.starts_with("boost::asio::async_result<") &&
        without_template_arguments(name).starts_with(initiate)) {
        auto operation = without_template_arguments(name).substr(initiate.size());
        operation = operation.substr(0, operation.find_first_of(",)"));
        return "awaiting an Asio operation: " + operation;
    }
    return name + where;
}

std::string describe_await_chain(const await_chain& chain) {
    switch (chain.at) {
    case await_chain::state::outside:
        return "not inside its body: starting, or completing";
    case await_chain::state::unsupported:
        return "suspended (the await chain is not known for this version of Asio)";
    case await_chain::state::running:
        return "running now";
    case await_chain::state::suspended:
        break;
    }
    if (chain.frames.empty())
        return "suspended";
    const std::string text = symbolise_frames(chain.frames);
    std::string out = "suspended in (innermost first):";
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string::npos)
            end = text.size();
        const auto line = coroutine_frame_line({text.data() + start, end - start});
        if (!line.empty())
            out += "\n  " + line;
        start = end + 1;
    }
    return out;
}

std::string thread_header(int tid) {
    const auto t = inspect_thread(tid);
    std::string out = fmt::format("on thread {} \"{}\": {}", tid, t.name, t.state);
    if (!t.waiting_in.empty())
        out += fmt::format(", waiting in {}", t.waiting_in);
    return out;
}

} // namespace

void enlist(const std::shared_ptr<supervisor_core>& core) {
    auto& list = supervisors();
    try {
        std::lock_guard lock(list.mutex);
        core->enlisted_ = list.cores.insert(list.cores.end(), core);
        core->is_enlisted_ = true;
    } catch (const std::bad_alloc&) {
        // Missing from dump_all() is better than a supervisor that cannot be made.
    }
}

void delist(supervisor_core& core) noexcept {
    auto& list = supervisors();
    std::lock_guard lock(list.mutex);
    if (core.is_enlisted_) {
        list.cores.erase(core.enlisted_);
        core.is_enlisted_ = false;
    }
}

std::vector<std::shared_ptr<process_state>> supervisor_core::process_states_locked(
    const std::vector<std::shared_ptr<child_record>>& children) const {
    std::vector<std::shared_ptr<process_state>> out(children.size());
    if (running_processes_.empty())
        return out;
    for (std::size_t i = 0; i < children.size(); ++i)
        if (children[i]->kind_ == child_kind::process || children[i]->kind_ == child_kind::forked)
            if (auto it = running_processes_.find(children[i].get());
                it != running_processes_.end())
                out[i] = it->second;
    return out;
}

std::string thread_stack(pid_t tid) {
    install_stack_handler();
    auto r = std::make_unique<stack_request>();
    if (!ask_for_stack(tid, *r))
        return fmt::format("cannot be asked for its stack ({})", std::strerror(errno));
    if (!wait_for_answer(*r, clock_type::now() + stack_answer_deadline)) {
        std::lock_guard lock(abandoned_mutex);
        abandoned().push_back(std::move(r));
        return fmt::format("the thread did not answer within {} ms (signal blocked?)",
                           stack_answer_deadline.count());
    }
    return stack_text(*r);
}

std::vector<std::string>
supervisor_core::where_now(const std::vector<std::shared_ptr<child_record>>& children,
                           const std::vector<std::shared_ptr<process_state>>& states) const {
    std::vector<std::string> out(children.size());
    // A coroutine child in a handler that does not return is asked for its thread's stack,
    // as a thread child is.
    std::vector<int> running_on(children.size(), 0);
    std::vector<await_chain> chains(children.size());
    const auto chain_deadline = clock_type::now() + stack_answer_deadline;
    for (std::size_t i = 0; i < children.size(); ++i) {
        if (children[i]->kind_ != child_kind::coroutine)
            continue;
        if (current_child() == children[i].get()) {
            out[i] = "running now: this is the child that asked for the dump";
            continue;
        }
        chains[i] = read_await_chain(*children[i], chain_deadline);
        if (chains[i].at == await_chain::state::running) {
            running_on[i] = chains[i].thread;
            out[i] = fmt::format("running now: one of its handlers has not returned for {} ms; ",
                                 stack_answer_deadline.count());
        }
    }
    for (std::size_t i = 0; i < children.size(); ++i)
        if (children[i]->kind_ == child_kind::thread) {
            running_on[i] = children[i]->running_on_.load(std::memory_order_relaxed);
            if (running_on[i] == 0)
                out[i] = "queued: waiting for a thread of the pool";
        }
    // Every thread is asked first, then the answers are awaited against one deadline.
    std::vector<std::pair<std::size_t, int>> asked; // (child, tid)
    std::vector<std::unique_ptr<stack_request>> requests;
    for (std::size_t i = 0; i < children.size(); ++i) {
        const int tid = running_on[i];
        if (tid == 0)
            continue;
        install_stack_handler();
        // Read before the signal: answering it, the thread is running.
        out[i] += thread_header(tid);
        auto r = std::make_unique<stack_request>();
        if (!ask_for_stack(tid, *r)) {
            out[i] = fmt::format("on thread {}: cannot be asked for its stack ({})", tid,
                                 std::strerror(errno));
            continue;
        }
        asked.emplace_back(i, tid);
        requests.push_back(std::move(r));
    }
    const auto deadline = clock_type::now() + stack_answer_deadline;
    for (std::size_t k = 0; k < asked.size(); ++k) {
        const auto [i, tid] = asked[k];
        if (!wait_for_answer(*requests[k], deadline)) {
            out[i] += fmt::format("\nthe thread did not answer within {} ms (signal blocked?)",
                                  stack_answer_deadline.count());
            std::lock_guard lock(abandoned_mutex);
            abandoned().push_back(std::move(requests[k]));
            continue;
        }
        if (children[i]->running_on_.load(std::memory_order_relaxed) != tid)
            out[i] += "\n(the child left this thread meanwhile: the stack may be another's)";
        out[i] += "\nstack:\n" + stack_text(*requests[k]);
    }
    for (std::size_t i = 0; i < children.size(); ++i)
        if (children[i]->kind_ == child_kind::coroutine && out[i].empty())
            out[i] = describe_await_chain(chains[i]);
    std::vector<std::pair<pid_t, pid_t>> table;
    bool table_read = false;
    for (std::size_t i = 0; i < children.size(); ++i) {
        if (states[i]) {
            // One reading of /proc for all the processes of this dump.
            if (!table_read) {
                table = process_table();
                table_read = true;
            }
            out[i] = process_now(*states[i], table);
        } else if (children[i]->kind_ == child_kind::process ||
                   children[i]->kind_ == child_kind::forked) {
            out[i] = "starting";
        }
    }
    return out;
}

supervisor_core::dump_snapshot supervisor_core::snapshot_locked() const {
    dump_snapshot s;
    s.running = table_.running().size();
    s.listed.reserve(std::min(s.running, max_listed));
    // Admission order: the longest running first.
    for (const auto& child : table_.running()) {
        if (s.listed.size() == max_listed)
            break;
        s.listed.push_back(child);
    }
    s.states = process_states_locked(s.listed);
    s.finished = table_.finished_count();
    s.recent = table_.recent();
    return s;
}

std::string supervisor_core::format_dump(const dump_snapshot& s,
                                         const std::vector<std::string>& now,
                                         const std::string& headline) const {
    const auto at = clock_type::now();
    std::string out = !headline.empty()
                          ? headline
                          : fmt::format("warden: supervisor {}: {} child{} running", options_.name,
                                        s.running, s.running == 1 ? "" : "ren");
    for (std::size_t i = 0; i < s.listed.size(); ++i) {
        const child_record& child = *s.listed[i];
        out += fmt::format("\n  {} ({}) running for {}{}", child.name_, to_string(child.kind_),
                           seconds(at - child.started_),
                           child.cancel_requested() ? ", cancelling" : "");
        auto where = describe_origin(origin_of(child), "    ");
        if (!where.empty() && where.back() == '\n')
            where.pop_back();
        out += "\n" + where;
        if (!now[i].empty()) {
            out += "\n    now:";
            append_indented(out, now[i], "      ");
        }
    }
    if (s.running > s.listed.size())
        out += fmt::format("\n  ... and {} more", s.running - s.listed.size());
    if (s.recent.empty()) {
        out += "\n  none finished yet";
        return out;
    }
    out += fmt::format("\n  finished recently (the last {} of {}, newest first):", s.recent.size(),
                       s.finished);
    for (const auto& f : s.recent) {
        out += fmt::format("\n  {} ({}) {} after {}", f.name, to_string(f.kind), outcome_of(f),
                           seconds(f.ran_for));
        if (f.pid != 0)
            out += fmt::format(", pid {}", f.pid);
        if (f.where.file_name() != nullptr && *f.where.file_name() != '\0')
            out += fmt::format("\n    spawned at {}:{}", f.where.file_name(), f.where.line());
        if (f.kind == child_kind::process || f.kind == child_kind::forked) {
            for (const auto& d : f.left_running)
                out += "\n    left running, killed: " + d;
            if (f.last_output.empty()) {
                out += "\n    no output";
            } else {
                out += "\n    last output:";
                const std::size_t from = f.last_output.size() > dump_output_lines
                                             ? f.last_output.size() - dump_output_lines
                                             : 0;
                for (std::size_t i = from; i < f.last_output.size(); ++i)
                    out += "\n      " + f.last_output[i];
            }
        }
    }
    return out;
}

std::string supervisor_core::dump(const std::string& headline) const {
    dump_snapshot s;
    {
        auto lock = this->lock();
        s = snapshot_locked();
    }
    return format_dump(s, where_now(s.listed, s.states), headline);
}

namespace {

// The signal's side: the handler writes one byte to a pipe; this thread reads it, builds
// dump_all() and writes it to stderr. Both ends of the pipe stay open until the process ends:
// a handler that runs during exit must never write to a closed or reused descriptor, nor to
// a pipe without a reader (SIGPIPE).
std::atomic<int> signal_pipe{-1};
std::atomic<pid_t> signal_owner{0};

constexpr char dump_byte = 1;
constexpr char stop_byte = 0;

void on_dump_signal(int sig) {
    const int saved = errno;
    if (::getpid() != signal_owner.load(std::memory_order_relaxed)) {
        // A forked child between fork() and resetting its handlers: the pipe is not its own.
        ::signal(sig, SIG_DFL);
        ::raise(sig);
    } else if (const int fd = signal_pipe.load(std::memory_order_relaxed); fd >= 0) {
        [[maybe_unused]] const auto n = ::write(fd, &dump_byte, 1);
    }
    errno = saved;
}

void write_all(int fd, std::string_view text) {
    while (!text.empty()) {
        const ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

class dump_thread {
  public:
    dump_thread() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::system_category(), "warden: dump signal pipe");
        read_ = above_stdio(fds[0]);
        write_ = above_stdio(fds[1]);
        if (read_ < 0 || write_ < 0)
            throw std::system_error(errno, std::system_category(), "warden: dump signal pipe");
        // A storm of signals fills the pipe; the handler must not block on it.
        ::fcntl(write_, F_SETFL, O_NONBLOCK);
        // Its signals blocked: the kernel must not pick it for the dump signal itself.
        worker_ = start_helper_thread("warden dump", [this] { serve(); });
        signal_owner.store(::getpid());
        signal_pipe.store(write_);
    }

    // A dump asked for before exit began is written before the thread ends.
    ~dump_thread() {
        // Blocking for this one byte: the pipe is drained by the thread.
        ::fcntl(write_, F_SETFL, 0);
        write_all(write_, std::string_view(&stop_byte, 1));
        worker_.join();
    }

    dump_thread(const dump_thread&) = delete;
    dump_thread& operator=(const dump_thread&) = delete;

  private:
    void serve() {
        char bytes[64];
        for (;;) {
            const ssize_t n = ::read(read_, bytes, sizeof bytes);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return;
            const std::string_view got(bytes, static_cast<std::size_t>(n));
            // Signals that came while a dump was being written are answered by one dump.
            if (got.find(dump_byte) != std::string_view::npos) {
                try {
                    write_all(STDERR_FILENO, dump_all());
                } catch (...) {
                    write_all(STDERR_FILENO, "warden: the dump failed (out of memory?)\n");
                }
            }
            if (got.find(stop_byte) != std::string_view::npos)
                return;
        }
    }

    int read_ = -1;
    int write_ = -1;
    std::thread worker_;
};

// Started by the first install_dump_signal, joined by exit's static destructors.
class dump_thread_owner {
  public:
    dump_thread_owner()
        : owner_(::getpid())
        , thread_(std::make_unique<dump_thread>()) {}
    ~dump_thread_owner() {
        if (::getpid() != owner_) {
            // A fork's child calling exit(): the thread is the parent's.
            [[maybe_unused]] dump_thread* not_ours = thread_.release();
            return;
        }
        thread_.reset();
    }
    dump_thread_owner(const dump_thread_owner&) = delete;
    dump_thread_owner& operator=(const dump_thread_owner&) = delete;

  private:
    pid_t owner_;
    std::unique_ptr<dump_thread> thread_;
};

} // namespace

} // namespace warden::detail

namespace warden {

std::string dump_all() {
    std::vector<std::shared_ptr<detail::supervisor_core>> cores;
    {
        auto& list = detail::supervisors();
        std::lock_guard lock(list.mutex);
        for (const auto& weak : list.cores)
            if (auto core = weak.lock())
                cores.push_back(std::move(core));
    }
    std::string out = fmt::format("warden: dump of pid {}: {} supervisor{}\n", ::getpid(),
                                  cores.size(), cores.size() == 1 ? "" : "s");
    for (const auto& core : cores)
        out += core->dump() + "\n";
    out += "warden: end of dump\n";
    return out;
}

void install_dump_signal(int sig) {
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    static detail::dump_thread_owner owner;
    struct sigaction action {};
    action.sa_handler = detail::on_dump_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (::sigaction(sig, &action, nullptr) != 0)
        throw std::system_error(errno, std::system_category(),
                                fmt::format("warden: install_dump_signal({})", sig));
}

} // namespace warden
