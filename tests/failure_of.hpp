#pragma once

// What a supervisor's wait throws for the children a test starts.

#include <stdexcept>

#include <doctest/doctest.h>

#include <warden/supervisor.hpp>

namespace warden_test {

// What sup.wait() throws, caught as `Exception`, for the children `spawn(sup)` starts. Fails
// the test if the wait returns; any other exception goes to the test case.
template <class Exception, class Spawn>
Exception failure_of(Spawn spawn) {
    warden::supervisor sup;
    spawn(sup);
    try {
        sup.wait();
    } catch (const Exception& e) {
        return e;
    }
    FAIL("the child did not fail as expected");
    throw std::logic_error("unreachable");
}

} // namespace warden_test
