#include "join_bell.hpp"

#include <cstdint>
#include <new>
#include <utility>

#include <sys/eventfd.h>
#include <unistd.h>

#include "core.hpp"

namespace asio = boost::asio;

namespace warden::detail {

struct join_bell::descriptor {
    explicit descriptor(int fd) noexcept
        : fd(fd) {}
    descriptor(const descriptor&) = delete;
    descriptor& operator=(const descriptor&) = delete;
    ~descriptor() { ::close(fd); }

    const int fd;
};

std::unique_ptr<join_bell> join_bell::make(const asio::any_io_executor& executor) noexcept {
    if (thread_of(executor).context == nullptr)
        return nullptr;
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return nullptr;
    std::shared_ptr<descriptor> owned;
    try {
        owned = std::make_shared<descriptor>(fd);
    } catch (const std::bad_alloc&) {
        ::close(fd);
        return nullptr;
    }
    try {
        return std::make_unique<join_bell>(executor, std::move(owned));
    } catch (...) {
        // No memory, or the reactor cannot take the descriptor (owned closes it): a post
        // still wakes the join.
        return nullptr;
    }
}

join_bell::join_bell(const asio::any_io_executor& executor, std::shared_ptr<descriptor> fd)
    : fd_(std::move(fd))
    , waiting_(executor) {
    // Assigned, not owned: the fd is closed by the last holder of fd_, which may be a ringing
    // thread; waiting_ gives it up first (the destructor).
    waiting_.assign(fd_->fd);
}

join_bell::~join_bell() {
    // Taken out of the reactor (an armed wait ends with operation_aborted), not closed: fd_
    // closes it.
    (void)waiting_.release();
}

void join_bell::arm(unique_function<void()> on_ring) {
    waiting_.async_wait(
        asio::posix::descriptor_base::wait_read,
        [fd = fd_, on_ring = std::move(on_ring)](const boost::system::error_code& error) mutable {
            if (error)
                return; // disarmed, or the join ended
            std::uint64_t rings;
            // Nonblocking; resets the count, so that rings before this one
            // do not wake the next wait.
            (void)!::read(fd->fd, &rings, sizeof rings);
            on_ring();
        });
}

void join_bell::disarm() noexcept {
    boost::system::error_code ignored;
    waiting_.cancel(ignored);
}

bool join_bell::ring(const std::weak_ptr<descriptor>& ringer) noexcept {
    const auto fd = ringer.lock();
    if (!fd)
        return false;
    const std::uint64_t one = 1;
    // EAGAIN only at a count of 2^64 - 2: rung already.
    (void)!::write(fd->fd, &one, sizeof one);
    return true;
}

} // namespace warden::detail
