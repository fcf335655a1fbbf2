// coproc::address: Unix socket paths, Linux abstract names, TCP hosts and ports; and what
// the kernel makes of them.
#include <coproc/listener.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>

#include <boost/asio/error.hpp>

#include "connection/socket_address.hpp"

namespace coproc {

namespace {
constexpr std::size_t max_unix_path = sizeof(sockaddr_un::sun_path);  // 108 on Linux
}  // namespace

address address::unix_socket(std::string path) {
  if (path.empty()) throw std::invalid_argument("empty Unix socket path");
  if (path.size() > max_unix_path) throw std::invalid_argument("AF_UNIX path too long");
  if (path[0] != '\0' && path.find('\0') != std::string::npos)
    throw std::invalid_argument("embedded null byte");
  address a;
  a.family_ = family_type::unix_socket;
  a.path_ = std::move(path);
  return a;
}

address address::tcp(std::string host, std::uint16_t port) {
  if (host.find('\0') != std::string::npos) throw std::invalid_argument("embedded null byte");
  address a;
  a.family_ = family_type::tcp;
  a.host_ = std::move(host);
  a.port_ = port;
  return a;
}

std::string address::to_string() const {
  if (family_ == family_type::unix_socket)
    return is_abstract() ? "@" + path_.substr(1) : path_;
  const std::string port = std::to_string(port_);
  if (host_.find(':') != std::string::npos) return "[" + host_ + "]:" + port;
  return host_ + ":" + port;
}

namespace detail {

socket_address unix_socket_address(const address& where) {
  socket_address s;
  auto* un = reinterpret_cast<sockaddr_un*>(&s.storage);
  un->sun_family = AF_UNIX;
  const std::string& path = where.path();
  std::memcpy(un->sun_path, path.data(), path.size());
  // A path is terminated by the '\0' that follows it when there is room (the storage is
  // zeroed); an abstract name is exactly its bytes.
  s.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                    (where.is_abstract() || path.size() == max_unix_path ? 0 : 1));
  return s;
}

boost::system::error_code resolver_error(int eai) noexcept {
  namespace e = boost::asio::error;
  switch (eai) {
    case 0:
      return {};
    case EAI_AGAIN:
      return e::host_not_found_try_again;
    case EAI_BADFLAGS:
      return e::invalid_argument;
    case EAI_FAIL:
      return e::no_recovery;
    case EAI_FAMILY:
      return e::address_family_not_supported;
    case EAI_MEMORY:
      return e::no_memory;
    case EAI_NONAME:
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
      return e::host_not_found;
    case EAI_SERVICE:
      return e::service_not_found;
    case EAI_SOCKTYPE:
      return e::socket_type_not_supported;
    case EAI_SYSTEM:
      return {errno, boost::system::generic_category()};
    default:
      return e::host_not_found;
  }
}

void ipv4_first(std::vector<socket_address>& v) {
  std::stable_partition(v.begin(), v.end(),
                        [](const socket_address& s) { return s.family() == AF_INET; });
}

std::vector<socket_address> resolve_tcp(const address& where, bool passive, bool numeric_only,
                                        boost::system::error_code& ec) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  // No AI_ADDRCONFIG: on a machine whose only interface is the loopback it hides "localhost".
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) | (numeric_only ? AI_NUMERICHOST : 0);
  const std::string port = std::to_string(where.port());
  // No host: every interface for a listener, the loopback for a client.
  const char* host = where.host().empty() ? nullptr : where.host().c_str();
  addrinfo* found = nullptr;
  const int r = ::getaddrinfo(host, port.c_str(), &hints, &found);
  std::vector<socket_address> out;
  if (r != 0) {
    ec = resolver_error(r);
    return out;
  }
  for (addrinfo* ai = found; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    socket_address s;
    std::memcpy(&s.storage, ai->ai_addr, ai->ai_addrlen);
    s.length = ai->ai_addrlen;
    out.push_back(s);
  }
  ::freeaddrinfo(found);
  ipv4_first(out);
  ec = out.empty() ? boost::system::error_code(boost::asio::error::host_not_found)
                   : boost::system::error_code();
  return out;
}

std::vector<socket_address> resolve(const address& where, bool passive) {
  if (where.family() == address::family_type::unix_socket) return {unix_socket_address(where)};
  boost::system::error_code ec;
  auto found = resolve_tcp(where, passive, false, ec);
  if (ec) throw_error_code(ec, ("getaddrinfo " + where.to_string()).c_str());
  return found;
}

address tcp_address_of(const sockaddr_storage& s) {
  char host[INET6_ADDRSTRLEN] = {};
  std::uint16_t port = 0;
  if (s.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&s);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (s.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return address::tcp(host, port);
}

void throw_error_code(const boost::system::error_code& ec, const char* what) {
  throw std::system_error(static_cast<std::error_code>(ec), what);
}

}  // namespace detail
}  // namespace coproc
