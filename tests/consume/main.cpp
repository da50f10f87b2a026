// Uses warden::warden only: a coroutine child, a blocking child, and the first failure
// coming back to main as the child's own exception, with its report.
#include <warden/warden.hpp>

#include <boost/asio/awaitable.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

int main() {
    warden::supervisor sup;
    auto answer = sup.spawn([]() -> boost::asio::awaitable<int> { co_return 42; });
    auto twice = sup.spawn([] { return 2; }, {.name = "twice"});
    sup.wait();
    if (answer.get() * twice.get() != 84) {
        std::fputs("consume: wrong values from the children\n", stderr);
        return 1;
    }

    warden::supervisor failing{{.name = "failing"}};
    failing.spawn([] { throw std::runtime_error("install.sh: No such file or directory"); },
                  {.name = "installer"});
    try {
        failing.wait();
    } catch (const std::runtime_error& e) {
        const auto* report = warden::report_for(std::current_exception());
        if (report == nullptr || report->child != "installer" ||
            std::string(e.what()) != "install.sh: No such file or directory") {
            std::fputs("consume: the failure came back without its report\n", stderr);
            return 1;
        }
        std::printf("consume: caught the child's failure:\n%s\n", report->to_string().c_str());
        return 0;
    }
    std::fputs("consume: wait() did not throw the child's failure\n", stderr);
    return 1;
}
