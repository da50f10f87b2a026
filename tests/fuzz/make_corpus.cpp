// Writes the seed corpus for fuzz_remote_failure into the directory given as the only argument.
// Run once by hand; its output is checked in as tests/fuzz/corpus/.

#include "remote_failure.hpp"

#include <fstream>
#include <iostream>
#include <string>

namespace {

void write_seed(const std::string& dir, const std::string& name, const std::string& bytes) {
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_corpus DIR\n";
        return 2;
    }
    const std::string dir = argv[1];
    using warden::detail::encode_remote_failure;

    const std::string valid = encode_remote_failure(
        {"std::runtime_error", "disk on fire", " 0# work() at work.cpp:12\n 1# main\n"});
    write_seed(dir, "valid", valid);
    write_seed(dir, "empty_fields", encode_remote_failure({}));
    write_seed(dir, "binary_fields",
               encode_remote_failure({std::string("\0\xff", 2), "\xe2\x82\xac", ""}));
    write_seed(dir, "truncated", valid.substr(0, valid.size() / 2));

    std::string bad_magic = valid;
    bad_magic[0] = 'X';
    write_seed(dir, "bad_magic", bad_magic);

    std::string bad_version = valid;
    bad_version[4] = 7;
    write_seed(dir, "bad_version", bad_version);

    std::string overrun = encode_remote_failure({"T", "w", "s"});
    overrun[9 + 4 + 1] = 100; // the 'what' length
    write_seed(dir, "field_overrun", overrun);

    write_seed(dir, "trailing", valid + "junk");
    return 0;
}
