// Figure: spawn + join of 100k trivial coroutine children, capture::location, against
// asio::co_spawn with a counting completion handler. Target: <= 1.15x.
#include "spawn_coroutine.hpp"

int main(int argc, char** argv) {
    return warden_bench::spawn_coroutine_main(argc, argv, warden::capture::location,
                                              "coroutine, location", 1.15);
}
