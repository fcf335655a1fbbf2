// coproc internals: coproc::address as the kernel sees it (sockaddr), name resolution.
#pragma once

#include "core/private.hpp"

#include <sys/socket.h>

#include <system_error>
#include <vector>

#include <boost/system/error_code.hpp>

#include <coproc/listener.hpp>

namespace coproc::detail {

struct socket_address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const noexcept { return storage.ss_family; }
  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
};

// A Unix socket's sockaddr_un (an abstract name's length counts its bytes, no terminator).
socket_address unix_socket_address(const address& where);

// getaddrinfo's error as Asio names it (boost::asio::error::host_not_found...), errno for
// EAI_SYSTEM.
boost::system::error_code resolver_error(int eai) noexcept;

// A TCP address resolved (blocking getaddrinfo; numeric_only: AI_NUMERICHOST, so it never
// blocks and `ec` is host_not_found for a name). IPv4 addresses come first (Python's Client
// and Listener use AF_INET). `passive`: for bind (an empty host is every interface).
std::vector<socket_address> resolve_tcp(const address& where, bool passive, bool numeric_only,
                                        boost::system::error_code& ec);

// The sockaddrs to try for `where` (blocking for a TCP name). Throws std::system_error.
std::vector<socket_address> resolve(const address& where, bool passive);

// A bound TCP socket's address, numeric (getsockname).
address tcp_address_of(const sockaddr_storage& s);

// Orders IPv4 first, otherwise keeping the resolver's order.
void ipv4_first(std::vector<socket_address>& v);

[[noreturn]] void throw_error_code(const boost::system::error_code& ec, const char* what);

}  // namespace coproc::detail
