#pragma once

// The pool job that runs a thread child's body. Private to src/.

#include <memory>
#include <stop_token>

#include <warden/detail/child.hpp>
#include <warden/detail/function.hpp>

namespace warden::detail {

// A named type, not a lambda in start_blocking: the pool threads' warm-up runs one through the
// same Asio instantiations as every child (blocking_pool, executor_host.cpp), so that the
// unwinder has already seen the frames a child's throw is captured through.
struct blocking_job {
    std::shared_ptr<child_record> child;
    unique_function<void(std::stop_token)> body;

    void operator()();

    // A job for a pool thread's warm-up: its child belongs to no supervisor and records its
    // throws (capture::stacktrace), and its body throws once.
    static blocking_job warm_up();
};

} // namespace warden::detail
