// Built with -fsanitize=address: reads an int after freeing it, so AddressSanitizer reports a
// heap-use-after-free and aborts the program. test_sanitizer_report.cpp parses the report.

#include <cstdio>

// noinline: the report's first frame must be this function, whatever the build type.
__attribute__((noinline)) int read_freed_int() {
    int* volatile values = new int[4]{1, 2, 3, 4};
    delete[] values;
    return values[1];
}

int main() {
    std::printf("reading freed memory\n");
    std::fflush(stdout);
    return read_freed_int();
}
