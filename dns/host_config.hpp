// The host's resolver configuration as the proxy needs it: upstream servers,
// search domains, and per-domain routes. Sans-I/O: text in, values out.
//
// parse_resolv_conf() reads resolv.conf(5) the way glibc's res_init does:
// a keyword starts in column 0 and is followed by a space or tab; lines
// starting with '#' or ';' are comments; unknown keywords and unparseable
// values are skipped (a broken line never hides the rest of the file);
// `domain` and `search` replace each other, the last one wins; `options`
// takes ndots:N (≤ 15), timeout:N (≤ 30), attempts:N (≤ 5) and rotate, and
// ignores the rest. With no usable `nameserver` line the servers default to
// 127.0.0.1, as glibc's do.
//
// Deliberate differences from glibc: glibc uses only the first 3 servers
// (MAXNS); we keep up to kMaxServers so failover reaches every server the
// host lists (systemd-resolved's full resolv.conf lists more than 3). An IPv6
// link-local server keeps its zone ("fe80::1%eth0") in DnsServer::scope.
//
// Routes (`--dns-route DOMAIN=SERVER[:PORT]`) send names at or under DOMAIN
// to SERVER; the longest matching DOMAIN wins.
//
// Thread safety: pure functions and values.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/system/result.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dns/wire.hpp"  // name_in_domain

namespace causeway::dns {

constexpr uint16_t kDnsPort = 53;  // RFC 1035 §4.2
constexpr size_t kMaxServers = 8;  // ours; glibc's MAXNS is 3
constexpr size_t kMaxSearch = 32;  // ours; glibc ≥ 2.26 has no fixed limit
constexpr size_t kMaxRoutes = 64;  // ours; each route holds its own c-ares channels

struct DnsServer {
  boost::asio::ip::address address;
  uint16_t port = kDnsPort;
  std::string scope;  // IPv6 zone of a link-local server ("eth0"), else empty

  // "192.0.2.1:53", "[2001:db8::1]:53", "[fe80::1%eth0]:53".
  [[nodiscard]] std::string to_string() const;
  bool operator==(const DnsServer&) const = default;
};

// "192.0.2.1", "192.0.2.1:5353", "2001:db8::1", "[2001:db8::1]:5353",
// "fe80::1%eth0", "[fe80::1%eth0]:53". An IPv6 address with a port needs
// brackets. Port 0 is refused.
boost::system::result<DnsServer> parse_dns_server(std::string_view text);

struct HostDnsConfig {
  std::vector<DnsServer> servers;
  std::vector<std::string> search;  // lower-cased, no trailing dot
  int ndots = 1;
  int timeout_s = 5;
  int attempts = 2;
  bool rotate = false;
  bool operator==(const HostDnsConfig&) const = default;
};

HostDnsConfig parse_resolv_conf(std::string_view text);

struct DnsRoute {
  std::string domain;  // normalised: lower-cased, no trailing dot; "" is every name
  DnsServer server;
  bool operator==(const DnsRoute&) const = default;
};

// "corp.example=10.1.2.3", "corp.example=10.1.2.3:5353",
// "corp.example=[2001:db8::53]:53".
boost::system::result<DnsRoute> parse_dns_route(std::string_view text);

// Lower-cases and drops one trailing dot ("Corp.Example." -> "corp.example",
// "." -> "").
std::string normalize_domain(std::string_view domain);

}  // namespace causeway::dns
