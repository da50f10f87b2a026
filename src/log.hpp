#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace warden::detail {

// The "warden" logger; its level follows SPDLOG_LEVEL (e.g. SPDLOG_LEVEL=warden=debug).
// Reuses a logger of that name if the application registered one first.
spdlog::logger& log();

} // namespace warden::detail
