#include "remote_failure.hpp"

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include <doctest/doctest.h>

using warden::detail::decode_remote_failure;
using warden::detail::encode_remote_failure;
using warden::detail::max_remote_failure_size;
using warden::detail::remote_failure;

namespace {

constexpr std::size_t header_size = 9; // magic, version, payload length

std::string u32_le(std::uint32_t value) {
    std::string bytes;
    for (int shift = 0; shift < 32; shift += 8) {
        bytes.push_back(static_cast<char>((value >> shift) & 0xff));
    }
    return bytes;
}

// Built by hand rather than through the encoder, so that the tests pin the wire format itself.
std::string message_with_payload(std::string_view payload) {
    return "WRDF" + std::string(1, '\x01') + u32_le(static_cast<std::uint32_t>(payload.size())) +
           std::string(payload);
}

std::string field(std::string_view bytes) {
    return u32_le(static_cast<std::uint32_t>(bytes.size())) + std::string(bytes);
}

remote_failure sample() {
    return {"std::runtime_error", "disk on fire", " 0# work at work.cpp:12\n 1# main\n"};
}

void check_round_trip(const remote_failure& original) {
    const std::string bytes = encode_remote_failure(original);
    const auto decoded = decode_remote_failure(bytes);
    REQUIRE_MESSAGE(decoded.failure.has_value(), decoded.error);
    CHECK(decoded.error.empty());
    CHECK(decoded.failure->type_name == original.type_name);
    CHECK(decoded.failure->what == original.what);
    CHECK(decoded.failure->stacktrace == original.stacktrace);
}

std::string decode_error(std::string_view bytes) {
    const auto decoded = decode_remote_failure(bytes);
    CHECK_FALSE(decoded.failure.has_value());
    return decoded.error;
}

bool starts_with(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
}

} // namespace

TEST_CASE("An encoded failure decodes to the same three fields") {
    check_round_trip(sample());
}

TEST_CASE("The encoder writes exactly the documented wire format") {
    const std::string expected =
        message_with_payload(field("T") + field("oops") + field("#0 f at a.cpp:1\n"));
    CHECK(encode_remote_failure({"T", "oops", "#0 f at a.cpp:1\n"}) == expected);
}

TEST_CASE("A failure with all fields empty round-trips as a 21-byte message") {
    check_round_trip({});
    CHECK(encode_remote_failure({}).size() == header_size + 3 * 4);
}

TEST_CASE("Fields holding arbitrary binary bytes, NULs included, round-trip unchanged") {
    std::string every_byte;
    for (int i = 0; i < 256; ++i) {
        every_byte.push_back(static_cast<char>(i));
    }
    check_round_trip({std::string("a\0b", 3), every_byte, every_byte + every_byte});
}

TEST_CASE("A 2 MB what() is truncated so that the whole message fits the size limit") {
    remote_failure huge = sample();
    huge.what = std::string(2 * 1024 * 1024, 'x');
    const std::string bytes = encode_remote_failure(huge);
    CHECK(bytes.size() <= max_remote_failure_size);

    const auto decoded = decode_remote_failure(bytes);
    REQUIRE_MESSAGE(decoded.failure.has_value(), decoded.error);
    // The short fields survive whole; only the huge one pays, and says so.
    CHECK(decoded.failure->type_name == huge.type_name);
    CHECK(decoded.failure->stacktrace == huge.stacktrace);
    const std::string& what = decoded.failure->what;
    CHECK(what.size() > max_remote_failure_size - 1024);
    CHECK(what.substr(0, 1000) == std::string(1000, 'x'));
    CHECK(what.find("bytes truncated]") != std::string::npos);
}

TEST_CASE("Truncation keeps multi-byte UTF-8 characters whole") {
    remote_failure huge;
    const std::string euro = "\xe2\x82\xac";
    for (std::size_t i = 0; i < 2 * max_remote_failure_size / euro.size(); ++i) {
        huge.what += euro;
    }
    const auto decoded = decode_remote_failure(encode_remote_failure(huge));
    REQUIRE(decoded.failure.has_value());
    const std::string& what = decoded.failure->what;
    const std::size_t text_end = what.find(" [warden: ");
    REQUIRE(text_end != std::string::npos);
    CHECK(text_end % euro.size() == 0);
}

TEST_CASE("Several oversized fields share the space and the message still fits") {
    const std::string big(max_remote_failure_size, 'b');
    const std::string bytes = encode_remote_failure({big, big, big});
    CHECK(bytes.size() <= max_remote_failure_size);
    const auto decoded = decode_remote_failure(bytes);
    REQUIRE_MESSAGE(decoded.failure.has_value(), decoded.error);
    CHECK(decoded.failure->type_name.size() > max_remote_failure_size / 3 - 100);
    CHECK(decoded.failure->what.size() > max_remote_failure_size / 3 - 100);
    CHECK(decoded.failure->stacktrace.size() > max_remote_failure_size / 3 - 100);
}

TEST_CASE("A message that exactly fills the limit is not truncated") {
    const std::size_t room = max_remote_failure_size - header_size - 3 * 4;
    const remote_failure exact{"T", std::string(room - 2, 'w'), "S"};
    const std::string bytes = encode_remote_failure(exact);
    CHECK(bytes.size() == max_remote_failure_size);
    check_round_trip(exact);
}

TEST_CASE("An empty read is reported as the child having written nothing") {
    CHECK(decode_error("") == "empty message: the child wrote nothing");
}

TEST_CASE("Every proper prefix of a valid message is reported as truncated") {
    const std::string bytes = encode_remote_failure(sample());
    for (std::size_t length = 1; length < bytes.size(); ++length) {
        CAPTURE(length);
        const std::string error = decode_error(std::string_view(bytes).substr(0, length));
        CHECK(starts_with(error, "truncated: expected "));
        CHECK(error.find("got " + std::to_string(length)) != std::string::npos);
    }
    CHECK(decode_error(std::string_view(bytes).substr(0, 20)) ==
          "truncated: expected " + std::to_string(bytes.size()) + " bytes, got 20");
}

TEST_CASE("A message with the wrong magic is reported as bad magic, even when short") {
    std::string bytes = encode_remote_failure(sample());
    bytes[0] = 'X';
    CHECK(starts_with(decode_error(bytes), "bad magic"));
    CHECK(decode_error(bytes).find("got 58 52 44 46") != std::string::npos);
    CHECK(starts_with(decode_error("WRX"), "bad magic"));
    CHECK(starts_with(decode_error("hello, world"), "bad magic"));
}

TEST_CASE("A message of another version is reported with that version number") {
    std::string bytes = encode_remote_failure(sample());
    bytes[4] = 7;
    CHECK(starts_with(decode_error(bytes), "unsupported version 7"));
    CHECK(starts_with(decode_error(std::string("WRDF\0", 5)), "unsupported version 0"));
}

TEST_CASE("A payload length beyond the limit is reported as oversized before any allocation") {
    CHECK(starts_with(decode_error("WRDF\x01" + u32_le(0xffffffff)),
                      "oversized: payload length 4294967295 exceeds "));
    const std::uint32_t just_too_big = max_remote_failure_size - header_size + 1;
    CHECK(starts_with(decode_error("WRDF\x01" + u32_le(just_too_big)),
                      "oversized: payload length " + std::to_string(just_too_big)));
}

TEST_CASE("A field length running past the payload names the field") {
    CHECK(decode_error(message_with_payload(field("T") + u32_le(100) + "abc")) ==
          "field 'what' length 100 overruns payload: 3 bytes left");
    CHECK(decode_error(message_with_payload(u32_le(0xffffffff))) ==
          "field 'type_name' length 4294967295 overruns payload: 0 bytes left");
    CHECK(decode_error(message_with_payload(field("T") + field("w") + std::string("\x01\0", 2))) ==
          "field 'stacktrace' length prefix overruns payload: needs 4 bytes, 2 left");
}

TEST_CASE("Bytes left in the payload after the last field are rejected") {
    CHECK(decode_error(message_with_payload(field("T") + field("w") + field("s") + "zz")) ==
          "2 unused bytes at the end of the payload after the last field");
}

TEST_CASE("Bytes after the end of the message are reported as trailing garbage") {
    CHECK(decode_error(encode_remote_failure(sample()) + "junk!") ==
          "5 trailing bytes after the message");
    // Two messages back to back are not one message either.
    const std::string once = encode_remote_failure(sample());
    CHECK(decode_error(once + once) ==
          std::to_string(once.size()) + " trailing bytes after the message");
}

TEST_CASE("Random bytes never crash the decoder and anything accepted re-encodes identically") {
    std::mt19937 random(20240611);
    const auto random_bytes = [&](std::size_t length) {
        std::string bytes;
        for (std::size_t i = 0; i < length; ++i) {
            bytes.push_back(static_cast<char>(random() & 0xff));
        }
        return bytes;
    };
    int accepted = 0;
    for (int round = 0; round < 30000; ++round) {
        std::string bytes;
        switch (round % 3) {
        case 0: // pure noise
            bytes = random_bytes(random() % 64);
            break;
        case 1: // a plausible header, so that the field parser is reached
            bytes = random_bytes(random() % 64);
            bytes = "WRDF\x01" + u32_le(static_cast<std::uint32_t>(bytes.size())) + bytes;
            break;
        default: // a valid message, then maybe one byte flipped
            // One statement per draw: the order of evaluating operands is unspecified, and the
            // sequence should not depend on the compiler.
            for (int i = 0; i < 3; ++i) {
                bytes += field(random_bytes(random() % 4));
            }
            bytes = message_with_payload(bytes);
            if (random() % 2 == 0) {
                bytes[random() % bytes.size()] ^= static_cast<char>(1 + random() % 255);
            }
            break;
        }
        const auto decoded = decode_remote_failure(bytes);
        CHECK(decoded.failure.has_value() == decoded.error.empty());
        if (decoded.failure) {
            ++accepted;
            CHECK(encode_remote_failure(*decoded.failure) == bytes);
        }
    }
    CHECK(accepted > 0);
    MESSAGE(accepted << " of 30000 random inputs decoded");
}
