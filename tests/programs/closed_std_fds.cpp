// Closes the standard descriptors named in argv[1] ("0", "12", "012", ...), then runs a forked
// child and a subprocess that each read their stdin to its end (/dev/null: at once) and print
// lines, and exits with a bit set for each child whose lines are missing from its output tail
// (1: forked, 2: subprocess, 4: an exception). With its own stdout possibly closed, the exit
// status is all it can say. test_process.cpp runs it.

#include <warden/process.hpp>
#include <warden/supervisor.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

bool has(const std::vector<std::string>& tail, const std::string& line) {
    return std::find(tail.begin(), tail.end(), line) != tail.end();
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2)
        return 8;
    for (const char* fd = argv[1]; *fd != '\0'; ++fd)
        ::close(*fd - '0');
    int missing = 0;
    try {
        warden::supervisor sup;
        auto& forked = sup.spawn_forked([] {
            char byte;
            if (::read(STDIN_FILENO, &byte, 1) == 0)
                std::printf("forked stdin at its end\n");
            std::printf("forked stdout\n");
            std::fprintf(stderr, "forked stderr\n");
        });
        auto& process = sup.spawn_process({.argv = {"sh", "-c",
                                                    "cat && echo process stdin at its end; "
                                                    "echo process stdout; "
                                                    "echo process stderr >&2"}});
        sup.wait();
        const auto forked_tail = forked.output_tail();
        const auto process_tail = process.output_tail();
        if (!has(forked_tail, "forked stdin at its end") || !has(forked_tail, "forked stdout") ||
            !has(forked_tail, "forked stderr"))
            missing |= 1;
        if (!has(process_tail, "process stdin at its end") ||
            !has(process_tail, "process stdout") || !has(process_tail, "process stderr"))
            missing |= 2;
    } catch (...) {
        missing |= 4;
    }
    return missing;
}
