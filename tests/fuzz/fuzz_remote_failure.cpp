// libFuzzer target for the remote failure decoder. Build with
//   clang++ -std=c++20 -fsanitize=fuzzer,address,undefined -g -Isrc \
//       tests/fuzz/fuzz_remote_failure.cpp src/remote_failure.cpp
// and seed it with tests/fuzz/corpus/.

#include "remote_failure.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const auto decoded = warden::detail::decode_remote_failure(bytes);
    if (decoded.failure.has_value() == !decoded.error.empty()) {
        std::abort();
    }
    // The format has one encoding per message, so whatever is accepted must come back unchanged.
    if (decoded.failure && warden::detail::encode_remote_failure(*decoded.failure) != bytes) {
        std::abort();
    }
    return 0;
}
