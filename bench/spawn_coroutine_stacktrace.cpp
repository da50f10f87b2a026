// Figure: spawn + join of 100k trivial coroutine children, capture::stacktrace (the
// default), against asio::co_spawn with a counting completion handler. Targets: <= 3x on the
// caller's io_context; <= 1.5x with every default (the default constructor).
#include "spawn_coroutine.hpp"

int main(int argc, char** argv) {
    return warden_bench::spawn_coroutine_main(argc, argv, warden::capture::stacktrace,
                                              "coroutine, stacktrace", 3.0, 1.5);
}
