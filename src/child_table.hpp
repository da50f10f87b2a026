#pragma once

// The supervisor's table of children: those running, in admission order, and the last ones
// that finished. Private to src/.

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <string>
#include <vector>

#include <warden/detail/child.hpp>
#include <warden/report.hpp>

#include "body_outcome.hpp"

namespace warden::detail {

// What a process or forked child adds to its end (process_state.cpp), for the dump's list of
// children that finished.
struct process_ending {
    int pid = 0;
    std::optional<int> status; // waitpid's, when it was reaped here
    std::vector<std::string> last_output;
    std::vector<std::string> left_running; // descendants killed at its end
};

// A child that finished, as the dump shows it. Copied in child_finished's critical section,
// so that a child is always either in the table or here; the exception's what() is read only
// when a dump is made.
struct finished_child {
    std::string name;
    child_kind kind = child_kind::coroutine;
    std::source_location where;
    child_end end = child_end::succeeded;
    std::exception_ptr error; // its what() is read when it failed
    bool cancel_requested = false;
    std::chrono::steady_clock::duration ran_for{};
    int pid = 0;
    std::optional<int> status;
    std::vector<std::string> last_output;
    std::vector<std::string> left_running;
};

// The supervisor's table of running children: a list threaded through the records, in
// admission order. Entering and leaving it allocate nothing: a trivial child costs little more
// than a map node would. Guarded by the supervisor's
// mutex; the table holds each record by `table_ref_` while it is in.
class live_list {
  public:
    class iterator {
      public:
        explicit iterator(child_record* at) noexcept
            : at_(at) {}
        const std::shared_ptr<child_record>& operator*() const noexcept { return at_->table_ref_; }
        iterator& operator++() noexcept {
            at_ = at_->table_next_;
            return *this;
        }
        bool operator==(const iterator&) const noexcept = default;

      private:
        child_record* at_;
    };

    iterator begin() const noexcept { return iterator(head_); }
    iterator end() const noexcept { return iterator(nullptr); }
    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }

    void push_back(std::shared_ptr<child_record> child) noexcept {
        child_record* c = child.get();
        c->table_ref_ = std::move(child);
        c->table_prev_ = tail_;
        c->table_next_ = nullptr;
        (tail_ != nullptr ? tail_->table_next_ : head_) = c;
        tail_ = c;
        ++size_;
    }
    // The table's reference, or null if the child is not in it.
    std::shared_ptr<child_record> erase(child_record& c) noexcept {
        if (!c.table_ref_)
            return nullptr;
        (c.table_prev_ != nullptr ? c.table_prev_->table_next_ : head_) = c.table_next_;
        (c.table_next_ != nullptr ? c.table_next_->table_prev_ : tail_) = c.table_prev_;
        c.table_prev_ = c.table_next_ = nullptr;
        --size_;
        return std::move(c.table_ref_);
    }

  private:
    child_record* head_ = nullptr;
    child_record* tail_ = nullptr;
    std::size_t size_ = 0;
};

// Who is running and who finished lately. Guarded by the supervisor's mutex, like everything it
// holds; the records' identity fields are written by enter(), before any other thread sees
// them.
class child_table {
  public:
    // How many finished children it remembers; docs/hang-reports.md promises at least 8.
    static constexpr std::size_t recent_capacity = 16;

    // Gives the child its id, its name (`name`, or "<kind>#<id>") and its start time, and
    // enters it.
    void enter(const std::shared_ptr<child_record>& child, std::string name);

    // What leave() took out of the ring to make room: destroyed by the caller after the
    // supervisor's lock is released, since an exception's destructor is the user's code.
    struct evicted {
        std::exception_ptr error;
        std::vector<std::string> output;
        std::vector<std::string> left_running;
    };
    // Takes the child out and remembers it among the finished, in the same step, so a dump
    // finds every child in one of the two (test: "a wait_until that times out after a
    // process exited 0 says so, with its last output"). Returns the table's reference, null
    // if it was not in.
    std::shared_ptr<child_record> leave(child_record& child, const std::exception_ptr& error,
                                        child_end end, process_ending* ending, evicted& made_room);

    const live_list& running() const noexcept { return live_; }
    std::uint64_t finished_count() const noexcept { return finished_count_; }
    // The children that finished last, the newest first.
    std::vector<finished_child> recent() const;

  private:
    live_list live_;
    std::uint64_t next_id_ = 0;
    // A ring: the next slot is finished_count_ % recent_capacity.
    std::array<finished_child, recent_capacity> recent_;
    std::uint64_t finished_count_ = 0;
};

} // namespace warden::detail
