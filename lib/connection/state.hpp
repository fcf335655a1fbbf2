// coproc internals: one end of a connection, shared by the connection object and its pending
// asynchronous operations (which keep the descriptor open until they complete).
#pragma once

#include "core/private.hpp"

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include <boost/container/small_vector.hpp>

#include <coproc/bytes.hpp>
#include <coproc/connection.hpp>

#include "async/io_thread.hpp"
#include "core/fd.hpp"

namespace coproc::detail {

class registration;  // async/registration.hpp

class connection_state {
 public:
  connection_state(private_fd fd, bool readable, bool writable);
  ~connection_state();
  connection_state(const connection_state&) = delete;
  connection_state& operator=(const connection_state&) = delete;

  int fd() const noexcept { return fd_.get(); }
  bool is_socket() const noexcept { return socket_; }
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  bool readable() const noexcept { return readable_.load(std::memory_order_acquire); }
  bool writable() const noexcept { return writable_.load(std::memory_order_acquire); }

  // Misuse checks, Python's words (std::logic_error).
  void check_readable() const;
  void check_writable() const;

  // A receive that stopped inside a frame (maxlength exceeded, a terminal cancellation):
  // the stream is out of step, so the end stops reading (Python: readable=False).
  void poison_reading() noexcept { readable_.store(false, std::memory_order_release); }
  void poison_writing() noexcept { writable_.store(false, std::memory_order_release); }

  // Blocking I/O, one message at a time each way (the mutexes serialise threads). A receive
  // returns the payload; throws eof_error, std::system_error, buffer_too_short.
  void send_message(std::span<const std::byte> payload);
  bytes recv_message(std::optional<std::size_t> maxlength);
  std::size_t recv_message_into(std::span<std::byte> buf);

  // Read and write without blocking (EAGAIN when nothing can be done now): recv/send with
  // MSG_DONTWAIT on a socket; a pipe is made non-blocking for good on its first asynchronous
  // use (blocking calls then wait with poll). Return -1 with errno set, or the count.
  long read_now(std::span<std::byte> buf) noexcept;
  long write_now(std::span<iovec> iov) noexcept;
  void make_nonblocking();

  // Marks the end closed. The descriptor closes when the last holder lets go of the state
  // (pending asynchronous operations hold it); their waits are cancelled now.
  void close() noexcept;

  // Asynchronous operations: at most one receive and one send at a time (a blocking one that
  // finds an asynchronous one running is misuse: "another receive is in progress").
  bool try_begin_async_recv() noexcept { return !recv_busy_.exchange(true); }
  void end_async_recv() noexcept { recv_busy_.store(false, std::memory_order_release); }
  bool try_begin_async_send() noexcept { return !send_busy_.exchange(true); }
  void end_async_send() noexcept { send_busy_.store(false, std::memory_order_release); }

  // The registration of this descriptor with `reactor`, made on first use and kept until the
  // end closes or the reactor's context shuts down (async/registration.hpp).
  std::shared_ptr<registration> registration_for(const reactor& where);

 private:
  std::size_t read_some(std::span<std::byte> buf);

  private_fd fd_;
  bool socket_;
  std::atomic<bool> readable_, writable_;
  std::atomic<bool> closed_{false};
  std::atomic<bool> recv_busy_{false}, send_busy_{false};
  std::mutex recv_mutex_, send_mutex_;

  struct registration_entry {
    const void* reactor;
    std::weak_ptr<registration> reg;
    class registration_service* service;  // alive while `reg` is (it owns it until shutdown)
  };
  std::mutex registrations_mutex_;
  boost::container::small_vector<registration_entry, 1> registrations_;
};

struct connection_access {
  static connection make(std::shared_ptr<connection_state> s) noexcept {
    return connection(std::move(s));
  }
  static const std::shared_ptr<connection_state>& state(const connection& c) noexcept {
    return c.state_;
  }
};

// Writes every byte of `iov` to `fd`: sendmsg(MSG_NOSIGNAL) on a socket, write with SIGPIPE
// blocked and any SIGPIPE it raised consumed otherwise; waits for writability when the
// descriptor is non-blocking. Returns 0 or the errno that stopped it (EPIPE: the peer went).
int write_all(int fd, bool socket, std::span<iovec> iov) noexcept;

}  // namespace coproc::detail
