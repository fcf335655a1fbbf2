// coproc internals: readable type names for messages.
#pragma once

#include "core/private.hpp"

#include <string>
#include <typeinfo>

namespace coproc::detail {

std::string demangle(const char* mangled);
// The dynamic type of the exception being handled ("unknown exception" for a foreign one).
std::string current_exception_type();
// "<type>: <what()>" for a std::exception, "<type> (not a std::exception)" otherwise; in a
// catch handler.
std::string describe_current_exception();

}  // namespace coproc::detail
