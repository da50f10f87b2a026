#pragma once

#include <warden/dump.hpp>
#include <warden/errors.hpp>
#include <warden/options.hpp>
#include <warden/process.hpp>
#include <warden/report.hpp>
#include <warden/supervisor.hpp>
#include <warden/task.hpp>
