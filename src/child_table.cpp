#include "child_table.hpp"

#include <charconv>
#include <iterator>
#include <limits>
#include <string_view>

namespace warden::detail {

namespace {

// "thread#12": what fmt::format("{}#{}") makes, at a tenth of its cost per spawn.
std::string default_name(child_kind kind, std::uint64_t id) {
    char digits[std::numeric_limits<std::uint64_t>::digits10 + 1];
    char* end = std::to_chars(std::begin(digits), std::end(digits), id).ptr;
    const std::string_view kind_name = to_string(kind);
    std::string name;
    name.reserve(kind_name.size() + 1 + static_cast<std::size_t>(end - digits));
    name.append(kind_name).append(1, '#').append(std::string_view(digits, end));
    return name;
}

} // namespace

void child_table::enter(const std::shared_ptr<child_record>& child, std::string name) {
    child->id_ = ++next_id_;
    child->name_ = name.empty() ? default_name(child->kind_, child->id_) : std::move(name);
    child->started_ = std::chrono::steady_clock::now();
    live_.push_back(child);
}

std::shared_ptr<child_record> child_table::leave(child_record& child,
                                                 const std::exception_ptr& error, child_end end,
                                                 process_ending* ending, evicted& made_room) {
    auto taken = live_.erase(child);
    auto& slot = recent_[finished_count_++ % recent_capacity];
    slot.name.assign(child.name_); // the slot's buffer is reused
    slot.kind = child.kind_;
    slot.where = child.where_;
    slot.end = end;
    made_room.error = std::exchange(slot.error, error);
    slot.cancel_requested = child.cancel_requested();
    slot.ran_for = std::chrono::steady_clock::now() - child.started_;
    slot.pid = ending != nullptr ? ending->pid : 0;
    slot.status = ending != nullptr ? ending->status : std::nullopt;
    made_room.output =
        std::exchange(slot.last_output, ending != nullptr ? std::move(ending->last_output)
                                                          : std::vector<std::string>());
    made_room.left_running =
        std::exchange(slot.left_running, ending != nullptr ? std::move(ending->left_running)
                                                           : std::vector<std::string>());
    return taken;
}

std::vector<finished_child> child_table::recent() const {
    const auto kept = std::min<std::uint64_t>(finished_count_, recent_capacity);
    std::vector<finished_child> out;
    out.reserve(kept);
    for (std::uint64_t i = 1; i <= kept; ++i)
        out.push_back(recent_[(finished_count_ - i) % recent_capacity]);
    return out;
}

} // namespace warden::detail
