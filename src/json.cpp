#include "json.hpp"

#include <cstdio>

namespace warden::detail {

namespace {

// Length of the valid UTF-8 sequence starting at text[i], or 0 if it is not one (overlong
// forms, surrogates and code points past U+10FFFF are invalid too).
std::size_t utf8_sequence(std::string_view text, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    std::size_t length = 0;
    unsigned min_second = 0x80;
    unsigned max_second = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0)
            min_second = 0xa0;
        if (lead == 0xed)
            max_second = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0)
            min_second = 0x90;
        if (lead == 0xf4)
            max_second = 0x8f;
    } else {
        return 0;
    }
    if (i + length > text.size())
        return 0;
    if (byte(i + 1) < min_second || byte(i + 1) > max_second)
        return 0;
    for (std::size_t k = 2; k < length; ++k)
        if (byte(i + k) < 0x80 || byte(i + k) > 0xbf)
            return 0;
    return length;
}

} // namespace

std::string json_quote(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    out += '"';
    for (std::size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x80) {
            if (const auto n = utf8_sequence(text, i)) {
                out.append(text.substr(i, n));
                i += n;
            } else {
                out += "\xef\xbf\xbd";
                ++i;
            }
            continue;
        }
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20) {
                char escaped[8];
                std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
                out += escaped;
            } else {
                out += static_cast<char>(c);
            }
        }
        ++i;
    }
    out += '"';
    return out;
}

void json_object::key(std::string_view name) {
    if (out_.size() > 1)
        out_ += ',';
    out_ += json_quote(name);
    out_ += ':';
}

json_object& json_object::field(std::string_view name, std::string_view value) {
    key(name);
    out_ += json_quote(value);
    return *this;
}

json_object& json_object::field(std::string_view name, long long value) {
    key(name);
    out_ += std::to_string(value);
    return *this;
}

json_object& json_object::field(std::string_view name, const std::vector<std::string>& values) {
    std::vector<std::string> quoted;
    quoted.reserve(values.size());
    for (const auto& value : values)
        quoted.push_back(json_quote(value));
    return raw(name, json_array(quoted));
}

json_object& json_object::raw(std::string_view name, std::string_view json) {
    key(name);
    out_ += json;
    return *this;
}

std::string json_array(const std::vector<std::string>& encoded) {
    std::string out = "[";
    for (const auto& item : encoded) {
        if (out.size() > 1)
            out += ',';
        out += item;
    }
    return out + "]";
}

} // namespace warden::detail
