// coproc: Python's multiprocessing.Process for C++20 and Boost.Asio. The umbrella header.
#pragma once

#include <coproc/apply_async.hpp>
#include <coproc/bytes.hpp>
#include <coproc/connection.hpp>
#include <coproc/context.hpp>
#include <coproc/error.hpp>
#include <coproc/fork_policy.hpp>
#include <coproc/listener.hpp>
#include <coproc/pool.hpp>
#include <coproc/process.hpp>
#include <coproc/start_method.hpp>
#include <coproc/version.hpp>
#include <coproc/wait.hpp>
