// SCAFFOLD: replaced by the subprocess implementation.
#include <stdexcept>
#include <warden/process.hpp>
#include <warden/supervisor.hpp>
namespace warden {
process::process(std::shared_ptr<detail::process_state> state)
    : state_(std::move(state)) {}
process::~process() = default;
process& supervisor::spawn_process(process_options, std::source_location) {
    throw std::logic_error("scaffold");
}
process& supervisor::start_forked(detail::unique_function<void()>, spawn_options,
                                  const std::source_location&) {
    throw std::logic_error("scaffold");
}
} // namespace warden
