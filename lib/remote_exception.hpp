// coproc internals: how an exception travels from the process that caught it to the one that
// rethrows it as coproc::remote_error (apply_async's child, a pool's worker): a JSON object
// {"type": <the dynamic type's name>, "message": <what()>}, which a Python peer reads too.
#pragma once

#include "core/private.hpp"

#include <span>
#include <string>

#include <coproc/bytes.hpp>

namespace coproc::detail {

// In a catch handler: the exception being handled, in that form.
bytes current_exception_text();

// Reads that form. `type` is "unknown" and `message` is `malformed` when the text is not one.
void read_exception_text(std::span<const std::byte> text, std::string& type, std::string& message,
                         const char* malformed);

}  // namespace coproc::detail
