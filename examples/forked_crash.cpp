// A forked worker that crashes: the parent gets process_crashed with the signal, the worker's
// output, and its crash stack, symbolised, starting at the function that crashed.
//
// Exits 0 after showing the report.

#include <warden/warden.hpp>

#include <cstdio>

namespace {

// volatile: a plain write through a null pointer is undefined behaviour that g++ may turn into
// a trap instruction (SIGILL) instead of the SIGSEGV a real bug would give.
int* volatile no_record = nullptr;

[[gnu::noinline]] void parse_record(int* record) {
    *record = 42;
}

[[gnu::noinline]] void worker() {
    std::puts("worker: parsing the first record");
    parse_record(no_record);
    std::puts("worker: done");
}

} // namespace

int main() {
    warden::supervisor sup({.name = "forked-crash"});
    sup.spawn_forked(worker, {.name = "worker"});
    try {
        sup.wait();
        std::puts("the worker did not crash");
    } catch (const warden::process_crashed& e) {
        std::printf("caught warden::process_crashed: %s (core dumped: %s)\n\n%s\n",
                    e.signal_name().c_str(), e.core_dumped() ? "yes" : "no", e.what());
    }
    return 0;
}
