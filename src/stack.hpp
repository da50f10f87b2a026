#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace warden::detail {

struct stack_capture;

// Raw frames of the calling thread, without symbols (about 2 us; symbols cost milliseconds).
std::shared_ptr<const stack_capture> capture_stack(std::size_t skip);
// "0# function at file:line" lines.
std::string symbolise(const stack_capture& stack);

// The demangled type name of the exception in flight (inside a catch block).
std::string current_exception_type_name();

} // namespace warden::detail
