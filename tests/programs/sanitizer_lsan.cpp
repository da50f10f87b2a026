// Built with -fsanitize=address: loses its only pointer to a buffer and exits 0, so
// LeakSanitizer reports the leak at exit and makes the exit status non-zero.
// test_sanitizer_report.cpp parses the report.

#include <cstdio>
#include <cstdlib>

// Written through volatile so that the allocation is not optimised away.
void* volatile leaked_pointer;

__attribute__((noinline)) void leak_a_buffer() {
    leaked_pointer = std::malloc(40);
    leaked_pointer = nullptr;
}

int main() {
    leak_a_buffer();
    std::printf("leaked 40 bytes\n");
    // LeakSanitizer ends the program with _exit, which would lose buffered output.
    std::fflush(stdout);
    return 0;
}
