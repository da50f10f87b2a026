// Uses warden::gtest only: the fixture and WARDEN_TEST from <warden/gtest.hpp>.
#include <warden/gtest.hpp>

#include <stdexcept>
#include <string>

struct Consume : warden::gtest::fixture {};

TEST_F(Consume, AChildsFailureReachesTheTestWithItsOrigin) {
    sup.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); });
    try {
        sup.wait();
        ADD_FAILURE() << "wait() did not throw the child's failure";
    } catch (const std::runtime_error&) {
        const auto* report = warden::report_for(std::current_exception());
        ASSERT_NE(report, nullptr);
        EXPECT_EQ(report->origin.test, "Consume.AChildsFailureReachesTheTestWithItsOrigin");
    }
}

WARDEN_TEST(Consume, ACoroutineTestBodyAwaitsItsChildren) {
    auto answer = sup.spawn([]() -> boost::asio::awaitable<int> { co_return 42; });
    const int value = co_await answer;
    EXPECT_EQ(value, 42);
    co_await sup.join();
}
