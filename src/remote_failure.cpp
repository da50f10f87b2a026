#include "remote_failure.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <new>

namespace warden::detail {
namespace {

constexpr std::string_view magic = "WRDF";
constexpr std::uint8_t version = 1;
constexpr std::size_t header_size = 9;
constexpr std::size_t length_size = 4;
constexpr std::size_t field_count = 3;
constexpr std::size_t max_payload_size = max_remote_failure_size - header_size;
constexpr std::size_t field_budget = max_payload_size - field_count * length_size;
constexpr std::array<std::string_view, field_count> field_names = {"type_name", "what",
                                                                   "stacktrace"};

static_assert(max_remote_failure_size <= UINT32_MAX, "lengths travel as u32");

void put_u32(std::string& out, std::size_t value) {
    for (int shift = 0; shift < 32; shift += 8) {
        out.push_back(static_cast<char>((value >> shift) & 0xff));
    }
}

std::uint32_t get_u32(std::string_view bytes) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < length_size; ++i) {
        value |= std::uint32_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
    }
    return value;
}

// Water-filling: fields shorter than an equal share of what is left keep every byte, and only
// the longest fields give anything up. When everything fits, nothing is cut, which is what
// makes decode-then-encode reproduce the original bytes.
std::array<std::size_t, field_count>
field_limits(const std::array<std::size_t, field_count>& sizes) {
    std::array<std::size_t, field_count> order = {0, 1, 2};
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return sizes[a] < sizes[b]; });
    std::array<std::size_t, field_count> limits{};
    std::size_t remaining = field_budget;
    for (std::size_t i = 0; i < field_count; ++i) {
        const std::size_t field = order[i];
        limits[field] = std::min(sizes[field], remaining / (field_count - i));
        remaining -= limits[field];
    }
    return limits;
}

std::string truncation_marker(std::size_t dropped) {
    return " [warden: " + std::to_string(dropped) + " bytes truncated]";
}

void put_field(std::string& out, std::string_view value, std::size_t limit) {
    if (value.size() <= limit) {
        put_u32(out, value.size());
        out.append(value);
        return;
    }
    // Sized for the worst case (every byte dropped), so the real, possibly shorter, marker
    // always fits once the kept prefix is settled.
    const std::size_t marker_room = truncation_marker(value.size()).size();
    if (limit < marker_room) {
        put_u32(out, limit);
        out.append(value.substr(0, limit));
        return;
    }
    std::size_t keep = limit - marker_room;
    // Texts are usually UTF-8; cutting inside a multi-byte sequence would leave an invalid tail
    // that some report sinks reject outright. At most three continuation bytes to step over.
    for (int step = 0;
         step < 3 && keep > 0 && (static_cast<unsigned char>(value[keep]) & 0xc0) == 0x80; ++step) {
        --keep;
    }
    const std::string marker = truncation_marker(value.size() - keep);
    put_u32(out, keep + marker.size());
    out.append(value.substr(0, keep));
    out.append(marker);
}

std::string hex_bytes(std::string_view bytes) {
    constexpr std::string_view digits = "0123456789abcdef";
    std::string text;
    for (const char c : bytes) {
        if (!text.empty()) {
            text.push_back(' ');
        }
        const auto byte = static_cast<unsigned char>(c);
        text.push_back(digits[byte >> 4]);
        text.push_back(digits[byte & 0xf]);
    }
    return text;
}

decoded_remote_failure fail(std::string error) {
    return {std::nullopt, std::move(error)};
}

decoded_remote_failure decode(std::string_view bytes) {
    if (bytes.empty()) {
        return fail("empty message: the child wrote nothing");
    }
    // Magic and version are checked on whatever prefix arrived, so that a short message of
    // garbage is called garbage rather than merely truncated.
    const std::string_view got_magic = bytes.substr(0, magic.size());
    if (got_magic != magic.substr(0, got_magic.size())) {
        return fail("bad magic: expected 57 52 44 46 (\"WRDF\"), got " + hex_bytes(got_magic));
    }
    if (bytes.size() > magic.size() && static_cast<unsigned char>(bytes[magic.size()]) != version) {
        return fail("unsupported version " +
                    std::to_string(static_cast<unsigned char>(bytes[magic.size()])) +
                    " (this build reads version " + std::to_string(version) + ")");
    }
    if (bytes.size() < header_size) {
        return fail("truncated: expected at least " + std::to_string(header_size) +
                    " bytes of header, got " + std::to_string(bytes.size()));
    }
    const std::size_t payload_size = get_u32(bytes.substr(magic.size() + 1));
    if (payload_size > max_payload_size) {
        return fail("oversized: payload length " + std::to_string(payload_size) + " exceeds " +
                    std::to_string(max_payload_size) + " (messages are limited to " +
                    std::to_string(max_remote_failure_size) + " bytes)");
    }
    const std::size_t message_size = header_size + payload_size;
    if (bytes.size() < message_size) {
        return fail("truncated: expected " + std::to_string(message_size) + " bytes, got " +
                    std::to_string(bytes.size()));
    }
    if (bytes.size() > message_size) {
        return fail(std::to_string(bytes.size() - message_size) +
                    " trailing bytes after the message");
    }

    std::string_view payload = bytes.substr(header_size);
    std::array<std::string_view, field_count> fields;
    for (std::size_t i = 0; i < field_count; ++i) {
        const std::string_view name = field_names[i];
        if (payload.size() < length_size) {
            return fail("field '" + std::string(name) + "' length prefix overruns payload: needs " +
                        std::to_string(length_size) + " bytes, " + std::to_string(payload.size()) +
                        " left");
        }
        const std::size_t field_size = get_u32(payload);
        payload.remove_prefix(length_size);
        if (field_size > payload.size()) {
            return fail("field '" + std::string(name) + "' length " + std::to_string(field_size) +
                        " overruns payload: " + std::to_string(payload.size()) + " bytes left");
        }
        fields[i] = payload.substr(0, field_size);
        payload.remove_prefix(field_size);
    }
    if (!payload.empty()) {
        return fail(std::to_string(payload.size()) +
                    " unused bytes at the end of the payload after the last field");
    }
    return {remote_failure{std::string(fields[0]), std::string(fields[1]), std::string(fields[2])},
            {}};
}

} // namespace

std::string encode_remote_failure(const remote_failure& failure) {
    const std::array<std::string_view, field_count> fields = {failure.type_name, failure.what,
                                                              failure.stacktrace};
    const auto limits = field_limits({fields[0].size(), fields[1].size(), fields[2].size()});
    std::string out;
    out.reserve(header_size + field_count * length_size + limits[0] + limits[1] + limits[2]);
    out.append(magic);
    out.push_back(static_cast<char>(version));
    put_u32(out, 0); // patched below: a cut field may come out shorter than its limit
    for (std::size_t i = 0; i < field_count; ++i) {
        put_field(out, fields[i], limits[i]);
    }
    const std::size_t payload_size = out.size() - header_size;
    for (std::size_t i = 0; i < length_size; ++i) {
        out[magic.size() + 1 + i] = static_cast<char>((payload_size >> (8 * i)) & 0xff);
    }
    return out;
}

decoded_remote_failure decode_remote_failure(std::string_view bytes) noexcept {
    try {
        return decode(bytes);
    } catch (const std::bad_alloc&) {
        // Short enough for the small-string buffer: building this reply cannot itself allocate.
        return {std::nullopt, "out of memory"};
    }
}

} // namespace warden::detail
