#include "stack.hpp"

#include <cstdlib>
#include <cxxabi.h>
#include <typeinfo>

#include <boost/stacktrace/stacktrace.hpp>

namespace warden::detail {

struct stack_capture {
    boost::stacktrace::stacktrace frames;
};

namespace {
// Deep enough to reach the test body through the spawn templates and a few user frames.
constexpr std::size_t max_spawn_depth = 32;
} // namespace

std::shared_ptr<const stack_capture> capture_stack(std::size_t skip) {
    // +1: this function's own frame.
    return std::make_shared<const stack_capture>(
        stack_capture{boost::stacktrace::stacktrace(skip + 1, max_spawn_depth)});
}

std::string symbolise(const stack_capture& stack) {
    return boost::stacktrace::to_string(stack.frames);
}

std::string current_exception_type_name() {
    const std::type_info* type = abi::__cxa_current_exception_type();
    if (type == nullptr)
        return "<no exception>";
    int status = 0;
    char* demangled = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
    std::string name = status == 0 && demangled != nullptr ? demangled : type->name();
    std::free(demangled);
    return name;
}

} // namespace warden::detail
