// Built with -fsanitize=thread: two threads increment a plain int with nothing ordering them,
// so ThreadSanitizer reports a data race (whichever runs first; no overlap in time is needed)
// and exits 66. test_sanitizer_report.cpp parses the report.

#include <cstdio>
#include <thread>

int counter;

__attribute__((noinline)) void race_on_counter() {
    ++counter;
}

int main() {
    std::thread other(race_on_counter);
    race_on_counter();
    other.join();
    std::printf("counter %d\n", counter);
    return 0;
}
