#include "netstack/forward.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fmt/format.h>

namespace causeway::netstack {
namespace {

bool parse_port(std::string_view text, int& out) {
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v < 1 || v > 65535) return false;
  out = v;
  return true;
}

bool fill_address(std::string_view ip, uint16_t port, sockaddr_storage& ss) {
  std::memset(&ss, 0, sizeof ss);
  const std::string s(ip);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);  // SAFETY: sockaddr_storage is sized and aligned for any family
  if (inet_pton(AF_INET, s.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);  // SAFETY: as above
  if (inet_pton(AF_INET6, s.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return true;
  }
  return false;
}

}  // namespace

boost::system::error_code probe_host_port(const PortForward& f) {
  const int type = f.proto == Proto::kTcp ? SOCK_STREAM : SOCK_DGRAM;
  const int s = ::socket(f.host.ss_family, type | SOCK_CLOEXEC, 0);
  if (s < 0) return {errno, boost::system::system_category()};
  const int one = 1;
  // As the real listener will: SO_REUSEADDR (TIME_WAIT is no conflict), and
  // IPv6 sockets IPv6-only (the IPv4 side is a forward of its own).
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (f.host.ss_family == AF_INET6) ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  const socklen_t len = f.host.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  boost::system::error_code ec;
  if (::bind(s, reinterpret_cast<const sockaddr*>(&f.host), len) < 0) ec = {errno, boost::system::system_category()};
  ::close(s);
  return ec;
}

std::string_view to_string(Proto p) { return p == Proto::kTcp ? "tcp" : "udp"; }

uint16_t PortForward::host_port() const {
  if (host.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&host)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&host)->sin6_port);
}

std::string PortForward::host_endpoint() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (host.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&host)->sin_addr, buf, sizeof buf);
    return fmt::format("{}:{}", buf, host_port());
  }
  inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&host)->sin6_addr, buf, sizeof buf);
  return fmt::format("[{}]:{}", buf, host_port());
}

std::string PortForward::describe() const {
  return fmt::format("{} {} -> guest:{}", to_string(proto), host_endpoint(), guest_port);
}

bool operator==(const PortForward& a, const PortForward& b) {
  return a.proto == b.proto && a.guest_port == b.guest_port && a.host_endpoint() == b.host_endpoint();
}

boost::system::result<PortForward, std::string> make_forward(std::string_view proto, std::string_view host_ip,
                                                             int host_port, int guest_port) {
  PortForward f;
  if (proto == "tcp")
    f.proto = Proto::kTcp;
  else if (proto == "udp")
    f.proto = Proto::kUdp;
  else
    return fmt::format("protocol must be tcp or udp, not '{}'", proto);
  if (host_port < 1 || host_port > 65535) return fmt::format("host port {} is out of range 1-65535", host_port);
  if (guest_port < 1 || guest_port > 65535) return fmt::format("guest port {} is out of range 1-65535", guest_port);
  if (!fill_address(host_ip, static_cast<uint16_t>(host_port), f.host))
    return fmt::format("'{}' is not an IPv4 or IPv6 address", host_ip);
  f.guest_port = static_cast<uint16_t>(guest_port);
  return f;
}

boost::system::result<std::vector<PortForward>, std::string> parse_publish_spec(std::string_view spec) {
  const std::string original(spec);
  auto fail = [&](std::string_view why) {
    return fmt::format("bad --publish '{}': {} (expected [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp])", original, why);
  };
  std::string_view proto = "tcp";
  if (auto slash = spec.rfind('/'); slash != std::string_view::npos) {
    proto = spec.substr(slash + 1);
    spec = spec.substr(0, slash);
    if (proto != "tcp" && proto != "udp") return fail("protocol must be tcp or udp");
  }
  std::string_view host_ip;
  if (!spec.empty() && spec.front() == '[') {
    const auto close = spec.find(']');
    if (close == std::string_view::npos || close + 1 >= spec.size() || spec[close + 1] != ':')
      return fail("unterminated [IPv6] address");
    host_ip = spec.substr(1, close - 1);
    spec = spec.substr(close + 2);
  } else if (std::count(spec.begin(), spec.end(), ':') == 2) {
    const auto colon = spec.find(':');
    host_ip = spec.substr(0, colon);
    spec = spec.substr(colon + 1);
  }
  const auto colon = spec.find(':');
  if (colon == std::string_view::npos || spec.find(':', colon + 1) != std::string_view::npos)
    return fail("need HOSTPORT:GUESTPORT");
  int host_port = 0;
  int guest_port = 0;
  if (!parse_port(spec.substr(0, colon), host_port)) return fail("host port must be 1-65535");
  if (!parse_port(spec.substr(colon + 1), guest_port)) return fail("guest port must be 1-65535");

  std::vector<PortForward> out;
  const std::vector<std::string_view> hosts =
      host_ip.empty() ? std::vector<std::string_view>{"127.0.0.1", "::1"} : std::vector<std::string_view>{host_ip};
  for (auto h : hosts) {
    auto f = make_forward(proto, h, host_port, guest_port);
    if (f.has_error()) return fail(f.error());
    out.push_back(*f);
  }
  return out;
}

}  // namespace causeway::netstack
