#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <warden/report.hpp>

namespace warden::detail {

// Makes a report findable by report_for(its error).
void register_report(std::shared_ptr<const failure_report> report);
// The newest report registered for this exception object, or null.
std::shared_ptr<const failure_report> find_report(const std::exception_ptr& error) noexcept;

// The running test's name (set_current_test), shared by every origin recorded in it; null
// outside a test.
std::shared_ptr<const std::string> current_test_shared();

std::string first_line(const failure_report& report);
// "spawned at file:line in f", "in test ...", "by child ...", "supervisor ..." lines.
std::string describe_origin(const origin& o, std::string_view indent);

} // namespace warden::detail
