// coproc: the exception types of Python's multiprocessing, and coproc::exit.
#pragma once

#include <stdexcept>
#include <string>

#include <coproc/bytes.hpp>

namespace coproc {

/// Base of the four documented multiprocessing exceptions (Python's ProcessError).
class process_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A message did not fit the buffer given to recv_bytes_into (Python's BufferTooShort).
/// The message was consumed from the connection; message() returns all of it.
class buffer_too_short : public process_error {
 public:
  explicit buffer_too_short(bytes message);
  const bytes& message() const noexcept { return message_; }

 private:
  bytes message_;
};

/// The challenge/response handshake of a connection failed (Python's AuthenticationError).
class authentication_error : public process_error {
 public:
  using process_error::process_error;
};

/// A result did not arrive in time (Python's multiprocessing.TimeoutError, not an OSError).
class timeout_error : public process_error {
 public:
  using process_error::process_error;
};

/// A typed message could not be converted (to JSON on send, or from it on receive). what()
/// names the C++ type and, for nested values, where.
class message_error : public process_error {
 public:
  using process_error::process_error;
};

/// End of stream on a connection (Python's EOFError).
class eof_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What coproc::exit(n) throws to unwind a target (Python's SystemExit).
///
/// It is deliberately not a std::exception: `catch (const std::exception&)` in a target
/// does not swallow an exit, while `catch (...)` without a rethrow does, as a bare
/// `except:` swallows SystemExit in Python.
struct system_exit {
  int code;  ///< already reduced to 0..255, as the kernel keeps it
};

/// Ends the current process with `code & 0xFF`.
///
/// In a child, on the thread that runs the target: unwinds the target by throwing
/// system_exit; the child then runs its clean-up (its own children) and `_exit`s.
/// In a child on any other thread: runs the same clean-up and `_exit`s at once.
/// In the main program: `std::exit(code)`, which runs coproc's at-exit policy.
[[noreturn]] void exit(int code);

}  // namespace coproc
