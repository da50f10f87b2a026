// detail::unique_function keeps small callables inline and larger ones on the heap; both
// must call, move and destroy exactly as a std::function would, each capture once.

#include <warden/detail/function.hpp>
#include <warden/detail/small_lock.hpp>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

using warden::detail::unique_function;

namespace {

// Counts live copies of a capture, to see each destroyed exactly once.
struct counted {
    explicit counted(int& live)
        : live_(&live) {
        ++*live_;
    }
    counted(counted&& other) noexcept
        : live_(other.live_) {
        ++*live_;
    }
    counted(const counted& other)
        : live_(other.live_) {
        ++*live_;
    }
    counted& operator=(const counted&) = delete;
    ~counted() { --*live_; }
    int* live_;
};

} // namespace

TEST_CASE("unique_function calls, moves and destroys an inline and a heap callable") {
    int live = 0;
    std::array<char, 64> padding{}; // makes the second callable too big for the inline buffer
    padding[0] = 'x';
    {
        auto small = [c = counted(live), n = 1](int x) { return x + n; };
        auto large = [c = counted(live), padding](int x) { return x + padding[0]; };
        static_assert(sizeof(small) <= 3 * sizeof(void*));
        static_assert(sizeof(large) > 3 * sizeof(void*));
        unique_function<int(int)> a(std::move(small));
        unique_function<int(int)> b(std::move(large));
        CHECK(a(1) == 2);
        CHECK(b(1) == 1 + 'x');

        unique_function<int(int)> moved_a(std::move(a));
        unique_function<int(int)> moved_b(std::move(b));
        CHECK_FALSE(static_cast<bool>(a)); // NOLINT(bugprone-use-after-move): checked on purpose
        CHECK_FALSE(static_cast<bool>(b)); // NOLINT(bugprone-use-after-move)
        CHECK(moved_a(2) == 3);
        CHECK(moved_b(2) == 2 + 'x');

        moved_a = std::move(moved_b); // destroys the inline callable, takes the heap one
        CHECK(moved_a(3) == 3 + 'x');
        moved_a = {};
        CHECK_FALSE(static_cast<bool>(moved_a));
    }
    CHECK(live == 0);
}

TEST_CASE("unique_function holds move-only callables and returns void") {
    auto owned = std::make_unique<std::string>("kept");
    std::string seen;
    unique_function<void()> f([p = std::move(owned), &seen] { seen = *p; });
    std::vector<unique_function<void()>> many;
    many.push_back(std::move(f));
    many.reserve(64); // relocates the element
    many.back()();
    CHECK(seen == "kept");
}

TEST_CASE("small_lock excludes: two threads each add 100000 times under it") {
    warden::detail::small_lock lock;
    long total = 0;
    auto add = [&] {
        for (int i = 0; i < 100000; ++i) {
            std::lock_guard guard(lock);
            ++total;
        }
    };
    std::thread other(add);
    add();
    other.join();
    CHECK(total == 200000);
}
