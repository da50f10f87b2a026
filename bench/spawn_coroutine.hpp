#pragma once

// Spawn + join of 100k trivial coroutine children: warden against asio::co_spawn with a
// counting completion handler, both on one io_context run by the calling thread. That is the
// fair comparison: `supervisor{io.get_executor()}` puts the children on the same
// single-threaded io_context as the baseline. The default-constructed supervisor (its own
// I/O thread, the caller blocked in wait()) is measured too, for information: it adds a
// thread hand-off that the baseline does not have.

#include <cstdlib>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include <warden/supervisor.hpp>

#include "common.hpp"

namespace warden_bench {

namespace asio = boost::asio;

inline asio::awaitable<void> trivial_child() {
    co_return;
}

inline void raw_co_spawn(std::size_t n) {
    asio::io_context io;
    std::size_t done = 0;
    for (std::size_t i = 0; i < n; ++i)
        asio::co_spawn(io, trivial_child(), [&done](std::exception_ptr) { ++done; });
    io.run();
    if (done != n)
        std::abort();
}

// The raw baseline plus what per-child cancellation costs in Asio itself: each child's
// completion handler bound to a cancellation slot of its own, as any code that wants to cancel
// one child (warden does, for fail_fast) must. Info: how much of warden's ratio is Asio's.
inline void raw_co_spawn_cancellable(std::size_t n) {
    asio::io_context io;
    std::size_t done = 0;
    std::vector<asio::cancellation_signal> signals(n);
    for (std::size_t i = 0; i < n; ++i)
        asio::co_spawn(io, trivial_child(),
                       asio::bind_cancellation_slot(signals[i].slot(),
                                                    [&done](std::exception_ptr) { ++done; }));
    io.run();
    if (done != n)
        std::abort();
}

struct tracked_coroutine_child {
    tracked_coroutine_child* previous = nullptr;
    tracked_coroutine_child* next = nullptr;
    std::shared_ptr<tracked_coroutine_child> self; // the table's reference
    asio::cancellation_signal cancel;
};

// An executor that marks its child as running for the length of each of the child's
// handlers, the least a supervisor does to learn, inside a child, which child runs: what lets
// a spawn from a child name its parent, and a join from inside a child be refused. It holds
// the child's record, since a copy may outlive the child (a coroutine may hand its executor
// to anyone), and so does each handler it runs, since the handler may destroy the child's last
// other holder and the mark must not point to freed memory while the handler runs.
inline thread_local const void* marked_child = nullptr;

template <class Inner>
class marking_executor {
  public:
    marking_executor(Inner inner, std::shared_ptr<tracked_coroutine_child> child) noexcept
        : inner_(std::move(inner))
        , child_(std::move(child)) {}

    template <class Property>
    auto query(const Property& p) const -> decltype(asio::query(std::declval<const Inner&>(), p)) {
        return asio::query(inner_, p);
    }
    template <class Property>
    requires asio::can_require<const Inner&, Property>::value auto
    require(const Property& p) const {
        using result = std::decay_t<decltype(asio::require(inner_, p))>;
        return marking_executor<result>(asio::require(inner_, p), child_);
    }
    template <class Property>
    requires asio::can_prefer<const Inner&, Property>::value auto prefer(const Property& p) const {
        using result = std::decay_t<decltype(asio::prefer(inner_, p))>;
        return marking_executor<result>(asio::prefer(inner_, p), child_);
    }
    template <class Function>
    void execute(Function&& f) const {
        inner_.execute([child = child_, f = std::forward<Function>(f)]() mutable {
            const void* previous = marked_child;
            marked_child = child.get();
            std::move(f)();
            marked_child = previous;
        });
    }
    friend bool operator==(const marking_executor& a, const marking_executor& b) noexcept {
        return a.child_ == b.child_ && a.inner_ == b.inner_;
    }
    friend bool operator!=(const marking_executor& a, const marking_executor& b) noexcept {
        return !(a == b);
    }

  private:
    template <class>
    friend class marking_executor;

    Inner inner_;
    std::shared_ptr<tracked_coroutine_child> child_;
};

// raw_co_spawn_cancellable plus the least that tracking each child takes, as for blocking
// children: a heap record per child holding its cancellation signal, a table of running children
// under a mutex, entered at the spawn and left by the completion handler (which also clears the
// slot, as warden must: Asio 1.81 leaves co_spawn's cancellation handler in it). Info: what any
// supervisor that can cancel, name or list each child pays before a feature of its own. With
// `Marked`, each child also runs on a marking_executor: the floor of a supervisor that also
// knows, inside a child, which child runs.
template <bool Marked>
void raw_co_spawn_tracked_on(std::size_t n) {
    asio::io_context io;
    std::size_t done = 0;
    tracked_table<tracked_coroutine_child> table;
    for (std::size_t i = 0; i < n; ++i) {
        auto child = std::make_shared<tracked_coroutine_child>();
        table.enter(child);
        auto slot = child->cancel.slot();
        auto executor = [&] {
            if constexpr (Marked)
                return marking_executor(io.get_executor(), child);
            else
                return io.get_executor();
        }();
        asio::co_spawn(std::move(executor), trivial_child(),
                       asio::bind_cancellation_slot(
                           slot, [&done, &table, child = std::move(child)](std::exception_ptr) {
                               child->cancel.slot().clear();
                               const auto table_ref = table.leave(*child);
                               ++done;
                           }));
    }
    io.run();
    if (done != n)
        std::abort();
}

inline void raw_co_spawn_tracked(std::size_t n) {
    raw_co_spawn_tracked_on<false>(n);
}

inline void raw_co_spawn_tracked_marked(std::size_t n) {
    raw_co_spawn_tracked_on<true>(n);
}

inline void warden_caller_io(std::size_t n, warden::capture capture) {
    asio::io_context io;
    warden::supervisor sup{io.get_executor(), {.capture = capture}};
    for (std::size_t i = 0; i < n; ++i)
        sup.spawn(trivial_child);
    bool joined = false;
    asio::co_spawn(io, sup.join(), [&joined](std::exception_ptr e) {
        if (e)
            std::rethrow_exception(e);
        joined = true;
    });
    io.run();
    if (!joined)
        std::abort();
}

inline void warden_own_io(std::size_t n, warden::capture capture) {
    warden::supervisor sup{{.capture = capture}};
    for (std::size_t i = 0; i < n; ++i)
        sup.spawn(trivial_child);
    sup.wait();
}

// `target`: the caller's-context row against raw co_spawn. `defaults_target`: the default
// constructor's row (its own I/O thread), a target only where `capture` is the default.
inline int spawn_coroutine_main(int argc, char** argv, warden::capture capture, const char* figure,
                                double target, std::optional<double> defaults_target = {}) {
    const bool smoke = take_smoke_flag(argc, argv);
    const std::size_t n = 100'000;
    const int repetitions = smoke ? 2 : 21;
    auto add = [&](const char* name, auto fn) {
        add_fresh_process_benchmark(name, repetitions, fn);
    };
    add("raw_co_spawn", [n] { raw_co_spawn(n); });
    add("raw_co_spawn_cancellable", [n] { raw_co_spawn_cancellable(n); });
    add("raw_co_spawn_tracked", [n] { raw_co_spawn_tracked(n); });
    add("raw_co_spawn_tracked_marked", [n] { raw_co_spawn_tracked_marked(n); });
    add("warden_caller_io", [n, capture] { warden_caller_io(n, capture); });
    add("warden_own_io", [n, capture] { warden_own_io(n, capture); });
    auto medians = run_benchmarks(argc, argv);

    const double raw = median_of(medians, "raw_co_spawn");
    const double caller = median_of(medians, "warden_caller_io");
    const double own = median_of(medians, "warden_own_io");
    const double cancellable = median_of(medians, "raw_co_spawn_cancellable");
    const double tracked = median_of(medians, "raw_co_spawn_tracked");
    const double marked = median_of(medians, "raw_co_spawn_tracked_marked");
    emit({fmt::format("{}: 100k coroutine spawn+join, supervisor on caller's io_context", figure),
          caller, raw, "ms", fmt::format("<= {:.2f}x", target), check(caller <= target * raw),
          fmt::format("median of {} interleaved repetitions, each in a fresh process",
                      repetitions)});
    if (defaults_target)
        emit({fmt::format("{}: same, default constructor (its own I/O thread)", figure), own, raw,
              "ms", fmt::format("<= {:.2f}x", *defaults_target),
              check(own <= *defaults_target * raw),
              "every default: supervisor sup; caller blocks in sup.wait()"});
    else
        emit({fmt::format("{}: same, supervisor with its own I/O thread (info)", figure), own, raw,
              "ms", "-", verdict::info, "default constructor; caller blocks in sup.wait()"});
    emit({fmt::format("{}: raw co_spawn with a cancellation slot per child (info)", figure),
          cancellable, raw, "ms", "-", verdict::info,
          "the baseline plus Asio's own per-child cancellation: a floor for any supervisor "
          "that can cancel one child"});
    emit({fmt::format("{}: that floor plus a record per child in a table under a mutex (info)",
                      figure),
          tracked, cancellable, "ms", "-", verdict::info,
          "against raw co_spawn with a slot per child: what tracking each child adds before any "
          "feature of a supervisor's own (the 1.15x target leaves warden the rest)"});
    emit(
        {fmt::format("{}: that floor plus the running child marked in each handler (info)", figure),
         marked, cancellable, "ms", "-", verdict::info,
         "against raw co_spawn with a slot per child: the child run on an executor that marks "
         "it running around each of its handlers, as a supervisor must to know, inside a child, "
         "which child spawns or joins"});
    emit({fmt::format("{}: caller's io_context against that floor", figure), caller, cancellable,
          "ms", "<= 1.15x", check(caller <= 1.15 * cancellable),
          "warden on the caller's io_context / raw co_spawn with a cancellation slot per child"});
    return 0;
}

} // namespace warden_bench
