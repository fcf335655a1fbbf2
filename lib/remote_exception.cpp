#include "remote_exception.hpp"

#include <exception>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <coproc/detail/json.hpp>

#include "core/demangle.hpp"

namespace coproc::detail {

bytes current_exception_text() {
  std::string type = current_exception_type(), what;
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
    what = "(not a std::exception)";
  }
  return as_bytes(
      boost::json::serialize(boost::json::object{{"type", type}, {"message", what}}));
}

void read_exception_text(std::span<const std::byte> text, std::string& type, std::string& message,
                         const char* malformed) {
  type = "unknown";
  try {
    const json::document doc(text, typeid(void));
    const auto* t = json::find_member(doc.root(), "type");
    const auto* m = json::find_member(doc.root(), "message");
    if (!t || !m || t->type != json::kind::string || m->type != json::kind::string)
      throw std::invalid_argument("not an exception");
    type = std::string(t->str());
    message = std::string(m->str());
  } catch (const std::exception&) {
    type = "unknown";
    message = malformed;
  }
}

}  // namespace coproc::detail
