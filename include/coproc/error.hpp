// coproc: the exception types of Python's multiprocessing, and coproc::exit.
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include <boost/system/error_code.hpp>

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

/// The error codes of coproc's own failures, as asynchronous operations report them (the
/// blocking forms throw the exceptions named here). Category name: "coproc".
enum class errc {
  authentication_failed = 1,  ///< the handshake failed (blocking: authentication_error)
  remote_error,               ///< the child's function threw (blocking: remote_error)
  child_died,                 ///< the child ended without a result (blocking: process_error)
  task_timed_out,   ///< a pool task ran past its deadline; its worker was killed (timeout_error)
  pool_terminated,  ///< the pool was terminated before the task ended (process_error)
  init_failed,      ///< the pool's initializer threw: no task can run (remote_error)
};

/// The category of coproc::errc.
const boost::system::error_category& error_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

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

template <>
struct boost::system::is_error_code_enum<coproc::errc> : std::true_type {};
