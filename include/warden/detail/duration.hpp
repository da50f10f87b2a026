#pragma once

#include <chrono>
#include <type_traits>

namespace warden::detail {

using clock_type = std::chrono::steady_clock;

// `d` as steady_clock's duration, clamped to what that type holds: a user's
// `std::chrono::hours::max()` means "no limit", not a multiplication that wraps to a negative
// number of nanoseconds (which would make every wait time out at once).
template <class Rep, class Period>
constexpr clock_type::duration saturate(std::chrono::duration<Rep, Period> d) noexcept {
    using target = clock_type::duration;
    // long double holds every int64 count exactly, and any count of a coarser unit in range.
    using wide = std::chrono::duration<long double, typename target::period>;
    const auto in_target_units = std::chrono::duration_cast<wide>(d).count();
    if (!(in_target_units < static_cast<long double>(target::max().count())))
        return target::max(); // also NaN
    if (in_target_units <= static_cast<long double>(target::min().count()))
        return target::min();
    return target(static_cast<target::rep>(in_target_units));
}

template <class T>
inline constexpr bool is_duration = false;
template <class Rep, class Period>
inline constexpr bool is_duration<std::chrono::duration<Rep, Period>> = true;

// A std::chrono::duration other than the clock's own: an overload taking one saturates it
// and forwards to the one taking the clock's.
template <class D>
concept other_duration = is_duration<D> && !std::is_same_v<D, clock_type::duration>;

// now + d, clamped to the clock's range: time_point::max() means "never".
inline clock_type::time_point deadline_after(clock_type::duration d,
                                             clock_type::time_point now = clock_type::now()) {
    if (d <= clock_type::duration::zero())
        return now; // zero or negative: a deadline already reached
    if (d >= clock_type::time_point::max() - now)
        return clock_type::time_point::max();
    return now + d;
}

} // namespace warden::detail
