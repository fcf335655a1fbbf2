#include "core/demangle.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <exception>

namespace coproc::detail {

std::string demangle(const char* mangled) {
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string result = (status == 0 && out) ? out : mangled;
  std::free(out);
  return result;
}

std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  return t ? demangle(t->name()) : "unknown exception";
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    const std::type_info* t = abi::__cxa_current_exception_type();
    return t ? demangle(t->name()) + " (not a std::exception)" : "unknown exception";
  }
}

}  // namespace coproc::detail
