#pragma once

// A JSON writer just big enough for warden's reports: a field is one call, so adding one to
// a report is one line.

#include <string>
#include <string_view>
#include <vector>

namespace warden::detail {

// `text` as a JSON string literal: quotes, backslashes and control characters escaped,
// valid UTF-8 passed through, each byte of an invalid sequence replaced by U+FFFD (output of
// a process may be anything, and a strict reader would reject the whole file).
std::string json_quote(std::string_view text);

class json_object {
  public:
    json_object& field(std::string_view key, std::string_view value);
    json_object& field(std::string_view key, const char* value) {
        return field(key, std::string_view(value));
    }
    json_object& field(std::string_view key, long long value);
    json_object& field(std::string_view key, const std::vector<std::string>& values);
    // `json` is already encoded (an object or an array).
    json_object& raw(std::string_view key, std::string_view json);
    std::string str() const { return out_ + "}"; }

  private:
    void key(std::string_view name);
    std::string out_ = "{";
};

// Already-encoded values as a JSON array.
std::string json_array(const std::vector<std::string>& encoded);

} // namespace warden::detail
