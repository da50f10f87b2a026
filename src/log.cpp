#include "log.hpp"

#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace warden::detail {

spdlog::logger& log() {
    static const std::shared_ptr<spdlog::logger> logger = [] {
        if (auto existing = spdlog::get("warden"))
            return existing;
        // Levels from the environment apply to loggers registered after loading them.
        spdlog::cfg::load_env_levels();
        try {
            return spdlog::stderr_color_mt("warden");
        } catch (const spdlog::spdlog_ex&) {
            // Registered by another thread between get() and here.
            return spdlog::get("warden");
        }
    }();
    return *logger;
}

} // namespace warden::detail
