// Built with -fsanitize=undefined: overflows a signed int. UndefinedBehaviorSanitizer reports it
// and, recovering (its default), the program goes on and exits 0. test_sanitizer_report.cpp
// parses the report.

#include <climits>
#include <cstdio>

// The argument comes from argc so that the compiler cannot fold the overflow away.
__attribute__((noinline)) int add_one(int value) {
    return value + 1;
}

int main(int argc, char**) {
    const int result = add_one(INT_MAX - 1 + argc);
    std::printf("result %d\n", result);
    return 0;
}
