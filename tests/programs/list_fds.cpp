// Prints the file descriptors open in this process, one per line, leaving out the one it reads
// /proc/self/fd through. test_process.cpp runs it to see what a child inherits.

#include <cstdio>
#include <cstdlib>

#include <dirent.h>

int main() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr)
        return 1;
    const int own = ::dirfd(dir);
    while (const dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.')
            continue;
        const int fd = std::atoi(entry->d_name);
        if (fd != own)
            std::printf("%d\n", fd);
    }
    ::closedir(dir);
    return 0;
}
