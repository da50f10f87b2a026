#pragma once

// A strict JSON (RFC 8259) validator for the tests of warden's JSON output: no raw control
// characters in strings, only the escapes JSON has, one value and nothing after it.

#include <cctype>
#include <string_view>

namespace warden_test {

class json_validator {
  public:
    explicit json_validator(std::string_view text)
        : text_(text) {}

    bool valid() {
        space();
        if (!value())
            return false;
        space();
        return at_ == text_.size();
    }

  private:
    bool value() {
        if (at_ >= text_.size())
            return false;
        switch (text_[at_]) {
        case '{':
            return object();
        case '[':
            return array();
        case '"':
            return string();
        case 't':
            return word("true");
        case 'f':
            return word("false");
        case 'n':
            return word("null");
        default:
            return number();
        }
    }
    bool object() {
        ++at_;
        space();
        if (eat('}'))
            return true;
        do {
            space();
            if (!string())
                return false;
            space();
            if (!eat(':'))
                return false;
            space();
            if (!value())
                return false;
            space();
        } while (eat(','));
        return eat('}');
    }
    bool array() {
        ++at_;
        space();
        if (eat(']'))
            return true;
        do {
            space();
            if (!value())
                return false;
            space();
        } while (eat(','));
        return eat(']');
    }
    bool string() {
        if (!eat('"'))
            return false;
        while (at_ < text_.size()) {
            const auto c = static_cast<unsigned char>(text_[at_++]);
            if (c == '"')
                return true;
            if (c < 0x20)
                return false;
            if (c != '\\')
                continue;
            if (at_ >= text_.size())
                return false;
            const char e = text_[at_++];
            if (e == 'u') {
                for (int i = 0; i < 4; ++i)
                    if (at_ >= text_.size() ||
                        !std::isxdigit(static_cast<unsigned char>(text_[at_++])))
                        return false;
            } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
                return false;
            }
        }
        return false;
    }
    bool number() {
        const auto start = at_;
        eat('-');
        if (!digits())
            return false;
        if (eat('.') && !digits())
            return false;
        if (eat('e') || eat('E')) {
            if (!eat('+'))
                eat('-');
            if (!digits())
                return false;
        }
        return at_ > start;
    }
    bool digits() {
        const auto start = at_;
        while (at_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[at_])))
            ++at_;
        return at_ > start;
    }
    bool word(std::string_view w) {
        if (text_.substr(at_, w.size()) != w)
            return false;
        at_ += w.size();
        return true;
    }
    bool eat(char c) {
        if (at_ < text_.size() && text_[at_] == c) {
            ++at_;
            return true;
        }
        return false;
    }
    void space() {
        while (at_ < text_.size() &&
               std::string_view(" \t\r\n").find(text_[at_]) != std::string_view::npos)
            ++at_;
    }

    std::string_view text_;
    std::size_t at_ = 0;
};

inline bool is_valid_json(std::string_view text) {
    return json_validator(text).valid();
}

} // namespace warden_test
