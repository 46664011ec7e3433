#include "portfwd/forward_policy.hpp"

#include <arpa/inet.h>

#include <cerrno>

#include <fmt/format.h>

namespace causeway::portfwd {
namespace {

constexpr std::array<uint8_t, 4> kDefaultGuestV4 = {127, 0, 0, 1};

}  // namespace

std::string HostForward::host_endpoint() const {
  if (wildcard) return fmt::format("{}:{}", host_family == Family::kIpv4 ? "0.0.0.0" : "[::]", port);
  return fmt::format("{}:{}", host_family == Family::kIpv4 ? "127.0.0.1" : "[::1]", port);
}
std::string HostForward::guest_endpoint() const {
  if (guest_family == Family::kIpv6) return fmt::format("[::1]:{}", port);
  return fmt::format("{}.{}.{}.{}:{}", guest_v4[0], guest_v4[1], guest_v4[2], guest_v4[3], port);
}

std::string host_bind_hint(int err, const HostForward& f) {
  if (err != EACCES && err != EPERM) return {};
  return fmt::format(
      "ports below net.ipv4.ip_unprivileged_port_start need privilege: allow it with "
      "`sysctl net.ipv4.ip_unprivileged_port_start={}` (as root), or forward a higher host port "
      "by hand: `-p 8080:{}{}` (or `causeway ctl PATH forward-add 8080:{}{}`)",
      f.port, f.port, f.proto == L4::kUdp ? "/udp" : "", f.port, f.proto == L4::kUdp ? "/udp" : "");
}

std::set<HostForward> plan_forwards(const std::set<Listener>& listeners, const PolicySettings& s) {
  std::set<HostForward> out;
  if (!s.enabled) return out;
  // Which of two forwards claiming one host endpoint to keep (higher wins):
  // a wildcard host side covers the loopback too; guest 127.0.0.1 is also
  // what a guest wildcard listener takes, so it beats another 127/8 address.
  auto rank = [](const HostForward& f) { return f.wildcard ? 2 : f.guest_v4 == kDefaultGuestV4 ? 1 : 0; };
  auto want = [&](L4 proto, Family host, Family guest, uint16_t port, bool wildcard = false,
                  std::array<uint8_t, 4> guest_v4 = kDefaultGuestV4) {
    if (s.ignored.count(port) || s.manual.count({proto, host, port})) return;
    const HostForward f{proto, host, port, guest, wildcard, guest_v4};
    // Two listeners may claim one host endpoint (0.0.0.0:P and [::]:P, or
    // 127.0.0.1:P and 127.0.0.2:P): keep one. Ties keep the first, in the
    // listeners' (deterministic) order.
    for (auto it = out.begin(); it != out.end(); ++it) {
      if (it->proto != proto || it->host_family != host || it->port != port) continue;
      if (rank(*it) >= rank(f)) return;
      out.erase(it);
      break;
    }
    out.insert(f);
  };
  const bool wide = s.host_wildcard;
  auto want_v4 = [&](L4 proto, uint16_t port, const uint8_t* a) {
    const std::array<uint8_t, 4> v4{a[0], a[1], a[2], a[3]};
    if (v4 == std::array<uint8_t, 4>{0, 0, 0, 0}) {
      want(proto, Family::kIpv4, Family::kIpv4, port, wide);
    } else if (v4 == kDefaultGuestV4) {
      want(proto, Family::kIpv4, Family::kIpv4, port);
    } else if (v4[0] == 127 && proto == L4::kTcp && s.tcp_any_v4_loopback) {
      want(proto, Family::kIpv4, Family::kIpv4, port, false, v4);  // relayed to that address, not 127.0.0.1
    }
  };
  for (const auto& l : listeners) {
    if (l.port == 0) continue;
    if (l.proto == L4::kUdp && l.port >= s.udp_ephemeral.first && l.port <= s.udp_ephemeral.second) continue;
    if (l.family == Family::kIpv4) {
      want_v4(l.proto, l.port, l.address.s6_addr);
      continue;
    }
    if (IN6_IS_ADDR_V4MAPPED(&l.address)) {
      want_v4(l.proto, l.port, l.address.s6_addr + 12);
    } else if (IN6_IS_ADDR_UNSPECIFIED(&l.address)) {
      if (!l.v6only) want(l.proto, Family::kIpv4, Family::kIpv4, l.port, wide);
      want(l.proto, Family::kIpv6, Family::kIpv6, l.port, wide);
    } else if (IN6_IS_ADDR_LOOPBACK(&l.address)) {
      want(l.proto, Family::kIpv6, Family::kIpv6, l.port);
    }
  }
  return out;
}

}  // namespace causeway::portfwd
