#pragma once

// What tests read of warden's log: the "warden" logger, and a sink that reacts to a line.

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <warden/supervisor.hpp>

namespace warden_test {

// Calls `on_match` for each log message containing `needle`.
class watching_sink final : public spdlog::sinks::base_sink<std::mutex> {
  public:
    watching_sink(std::string needle, std::function<void()> on_match)
        : needle_(std::move(needle))
        , on_match_(std::move(on_match)) {}

  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        if (std::string_view(msg.payload.data(), msg.payload.size()).find(needle_) !=
            std::string_view::npos)
            on_match_();
    }
    void flush_() override {}

  private:
    std::string needle_;
    std::function<void()> on_match_;
};

// The "warden" logger, made by a first supervisor if no test has made it yet.
inline std::shared_ptr<spdlog::logger> warden_logger() {
    if (auto logger = spdlog::get("warden"))
        return logger;
    warden::supervisor{}.spawn([] {}).get();
    return spdlog::get("warden");
}

} // namespace warden_test
