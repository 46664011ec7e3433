#include "cli/net_options.hpp"

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "dns/host_config.hpp"

namespace causeway::cli {

std::optional<NetSettings> net_settings(const NetOptions& o) {
  auto forwards = parse_publish(o);
  if (!forwards) return std::nullopt;
  auto dns = dns_setup(o);
  if (!dns) return std::nullopt;
  return NetSettings{std::move(*forwards), std::move(*dns), nat_config(o)};
}

netstack::NatConfig nat_config(const NetOptions& o) {
  netstack::NatConfig c;
  c.mtu = static_cast<size_t>(o.mtu);
  c.host_loopback = !o.no_host_loopback;
  c.ipv6 = !o.no_ipv6;
  c.dns_search = o.dns_search;
  c.tcp_fast = o.tcp_engine != "slirp";
  c.tcp_fast_explicit = o.tcp_engine == "fast";
  if (unsigned first = 0, last = 0;
      !o.forward_source_ports.empty() && std::sscanf(o.forward_source_ports.c_str(), "%u-%u", &first, &last) == 2) {
    c.forward_port_first = static_cast<uint16_t>(first);  // checked by the option's validator
    c.forward_port_last = static_cast<uint16_t>(last);
  }
  return c;
}

std::optional<DnsSetup> dns_setup(const NetOptions& o) {
  if (o.no_dns_tunneling && o.host_resolv_conf != "/etc/resolv.conf") {
    std::fprintf(stderr,
                 "causeway: --host-resolv-conf needs DNS tunneling: without it libslirp forwards to the first "
                 "server of /etc/resolv.conf and reads no other file\n");
    return std::nullopt;
  }
  if (o.no_dns_tunneling && !o.dns_routes.empty()) {
    std::fprintf(stderr, "causeway: --dns-route needs DNS tunneling (drop --no-dns-tunneling)\n");
    return std::nullopt;
  }
  DnsSetup d;
  d.tunneling = !o.no_dns_tunneling;
  d.host_resolv_conf = o.host_resolv_conf;
  for (auto& r : o.dns_routes) {
    auto route = dns::parse_dns_route(r);
    if (route.has_error()) {
      std::fprintf(stderr, "causeway: bad --dns-route '%s': %s (expected DOMAIN=SERVER[:PORT])\n", r.c_str(),
                   route.error().message().c_str());
      return std::nullopt;
    }
    d.routes.push_back(*route);
  }
  return d;
}

std::optional<std::vector<netstack::PortForward>> parse_publish(const NetOptions& o) {
  std::vector<netstack::PortForward> all;
  for (auto& spec : o.publish) {
    auto r = netstack::parse_publish_spec(spec);
    if (r.has_error()) {
      std::fprintf(stderr, "causeway: %s\n", r.error().c_str());
      return std::nullopt;
    }
    all.insert(all.end(), r->begin(), r->end());
  }
  return all;
}

sandbox::Policy sandbox_policy(const NetOptions& o, std::string mode) {
  namespace fs = std::filesystem;
  constexpr int kMaxSymlinkHops = 8;  // as the DNS watch follows them (dns/host_dns_watch.hpp)
  sandbox::Policy p;
  p.enabled = !o.no_sandbox;
  p.mode = std::move(mode);
  std::error_code ec;
  fs::path file = fs::absolute(o.no_dns_tunneling ? fs::path("/etc/resolv.conf") : fs::path(o.host_resolv_conf), ec)
                      .lexically_normal();
  for (int hop = 0; hop <= kMaxSymlinkHops && !file.empty(); ++hop) {
    p.read_only.push_back(file.parent_path());
    if (!fs::is_symlink(fs::symlink_status(file, ec))) break;
    fs::path target = fs::read_symlink(file, ec);
    if (ec) break;
    file = (target.is_relative() ? file.parent_path() / target : target).lexically_normal();
  }
  if (!o.control.empty()) p.read_write.push_back(fs::absolute(o.control, ec).lexically_normal().parent_path());
  return p;
}

}  // namespace causeway::cli
