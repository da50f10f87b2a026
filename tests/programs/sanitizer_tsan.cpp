// Built with -fsanitize=thread: two threads increment a plain int with nothing ordering them,
// so ThreadSanitizer reports a data race and exits 66. test_sanitizer_report.cpp parses the
// report. Both threads are inside race_on_counter at once: without that overlap in time, g++
// 12's ThreadSanitizer missed the race in 16 runs of 40 (with it, in none of 40). A relaxed
// atomic makes them meet without ordering the increments (no happens-before).

#include <atomic>
#include <cstdio>
#include <thread>

int counter;
std::atomic<int> arrived{0};

__attribute__((noinline)) void race_on_counter() {
    arrived.fetch_add(1, std::memory_order_relaxed);
    while (arrived.load(std::memory_order_relaxed) < 2) {
    }
    ++counter;
}

int main() {
    std::thread other(race_on_counter);
    race_on_counter();
    other.join();
    std::printf("counter %d\n", counter);
    return 0;
}
