#pragma once

#include <string_view>

namespace warden::detail {

// Calls `fn` with each line of `text`, without its '\n'; a last line with no '\n' counts, an
// empty text has none.
template <class Fn>
void for_each_line(std::string_view text, Fn fn) {
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos)
            end = text.size();
        fn(text.substr(start, end - start));
        start = end + 1;
    }
}

} // namespace warden::detail
