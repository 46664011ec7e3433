#include "portfwd/forward_policy.hpp"

#include <arpa/inet.h>

#include <cerrno>

#include <fmt/format.h>

namespace causeway::portfwd {
namespace {

bool is_v4_any(const in6_addr& a) { return a.s6_addr[0] == 0 && a.s6_addr[1] == 0 && a.s6_addr[2] == 0 && a.s6_addr[3] == 0; }
bool is_v4_loopback(const in6_addr& a) { return a.s6_addr[0] == 127; }  // 127.0.0.0/8
std::string_view proto_name(L4 p) { return p == L4::kTcp ? "tcp" : "udp"; }

}  // namespace

std::string Listener::describe() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == Family::kIpv4) {
    inet_ntop(AF_INET, &address, buf, sizeof buf);
    return fmt::format("{} {}:{}", proto_name(proto), buf, port);
  }
  inet_ntop(AF_INET6, &address, buf, sizeof buf);
  return fmt::format("{} [{}]:{}{}", proto_name(proto), buf, port, v6only ? " (v6only)" : "");
}

std::string HostForward::host_endpoint() const {
  if (wildcard) return fmt::format("{}:{}", host_family == Family::kIpv4 ? "0.0.0.0" : "[::]", port);
  return fmt::format("{}:{}", host_family == Family::kIpv4 ? "127.0.0.1" : "[::1]", port);
}
std::string HostForward::guest_endpoint() const {
  return fmt::format("{}:{}", guest_family == Family::kIpv4 ? "127.0.0.1" : "[::1]", port);
}

std::string host_bind_hint(int err, const HostForward& f) {
  if (err != EACCES && err != EPERM) return {};
  return fmt::format("ports below net.ipv4.ip_unprivileged_port_start need privilege: allow it with "
                     "`sysctl net.ipv4.ip_unprivileged_port_start={}` (as root), or forward a higher host port "
                     "by hand: `-p 8080:{}{}` (or `causeway ctl PATH forward-add 8080:{}{}`)",
                     f.port, f.port, f.proto == L4::kUdp ? "/udp" : "", f.port, f.proto == L4::kUdp ? "/udp" : "");
}

std::set<HostForward> plan_forwards(const std::set<Listener>& listeners, const PolicySettings& s) {
  std::set<HostForward> out;
  if (!s.enabled) return out;
  auto want = [&](L4 proto, Family host, Family guest, uint16_t port, bool wildcard = false) {
    if (s.ignored.count(port) || s.manual.count({proto, host, port})) return;
    // Two listeners may claim one host endpoint (0.0.0.0:P and [::]:P):
    // keep one; both lead to the same guest port. A wildcard one wins (it
    // covers the loopback too).
    for (auto it = out.begin(); it != out.end(); ++it) {
      if (it->proto != proto || it->host_family != host || it->port != port) continue;
      if (!wildcard || it->wildcard) return;
      out.erase(it);
      break;
    }
    out.insert(HostForward{proto, host, port, guest, wildcard});
  };
  const bool wide = s.host_wildcard;
  for (const auto& l : listeners) {
    if (l.port == 0) continue;
    if (l.proto == L4::kUdp && l.port >= s.udp_ephemeral.first && l.port <= s.udp_ephemeral.second) continue;
    if (l.family == Family::kIpv4) {
      if (is_v4_any(l.address)) want(l.proto, Family::kIpv4, Family::kIpv4, l.port, wide);
      if (is_v4_loopback(l.address)) want(l.proto, Family::kIpv4, Family::kIpv4, l.port);
      continue;
    }
    if (IN6_IS_ADDR_UNSPECIFIED(&l.address)) {
      if (!l.v6only) want(l.proto, Family::kIpv4, Family::kIpv4, l.port, wide);
      want(l.proto, Family::kIpv6, Family::kIpv6, l.port, wide);
    } else if (IN6_IS_ADDR_LOOPBACK(&l.address)) {
      want(l.proto, Family::kIpv6, Family::kIpv6, l.port);
    }
  }
  return out;
}

}  // namespace causeway::portfwd
