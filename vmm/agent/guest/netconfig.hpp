// Guest network configuration from a NetConfig message, with raw rtnetlink
// (no libnl: the agent is a small static binary).
//
// What it does, in order, on one link (eth0 in the VM):
//   1. wait (bounded) for the link to exist — virtio-net probes asynchronously
//      after its module is loaded;
//   2. IPv6 off → /proc/sys/net/ipv6/conf/<link>/disable_ipv6 = 1;
//   3. RTM_NEWLINK: MTU (if given) and IFF_UP;
//   4. RTM_NEWADDR for each address (IPv6 with IFA_F_NODAD: usable at once);
//   5. RTM_NEWROUTE for each route, in the order given (on-link routes first
//      is the sender's job), NLM_F_REPLACE so a second NetConfig updates;
//   6. /etc/resolv.conf, written to a temporary file and renamed (which replaces a symlink,
//      such as systemd-resolved's stub link, with a file) — unless the target says not to
//      (/etc/wsl.conf [network] generateResolvConf=false).
// A DnsConfig (protocol v3: the host's DNS settings changed) rewrites step 6 only.
// A failed step is recorded and the rest still run: a guest with an address
// but no DNS is more useful than one with nothing, and the host learns which
// step failed from the report (sent as Log/Error).
//
// The request builders are pure (bytes out) so they are unit-tested on the
// host; apply_net_config() is the I/O shell. rtnetlink(7), netlink(7).
//
// Thread safety: none needed (the agent is single-threaded).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/agent/protocol.hpp"

namespace causeway::agent::guest {

// ---------------------------------------------------------------- pure builders
// Each returns one complete netlink request (nlmsghdr + payload + attributes),
// NLM_F_REQUEST | NLM_F_ACK, with sequence number `seq`.
std::vector<uint8_t> build_link_request(uint32_t seq, int ifindex, bool up, uint32_t mtu);
// `scope`: RT_SCOPE_UNIVERSE (0), or RT_SCOPE_LINK (253) for an internal link (NetConfig::internal).
std::vector<uint8_t> build_address_request(uint32_t seq, int ifindex, const NetAddress& a, uint8_t scope = 0);
std::vector<uint8_t> build_route_request(uint32_t seq, int ifindex, const NetRoute& r);

// The resolv.conf for `cfg` ("" when it has no servers and no search domains): a header
// saying causeway wrote it and how to stop that, search, at most 3 (MAXNS) nameservers
// (IPv6 ones only when `ipv6`).
std::string render_resolv_conf(const NetConfig& cfg);
std::string render_resolv_conf(const std::vector<IpAddr>& servers, const std::vector<std::string>& search, bool ipv6);
// One line for logs: "eth0: 10.0.2.15/24, default via 10.0.2.2, dns 10.0.2.3, mtu 1500, ipv6 off".
std::string describe(const NetConfig& cfg, std::string_view link);

// ---------------------------------------------------------------- I/O shell
struct NetReport {
  bool ok = true;
  std::vector<std::string> lines;  // what was done / what failed, for the host's log
};

struct NetTarget {
  std::string link = "eth0";
  std::chrono::milliseconds link_wait{5000};  // for the link to appear
  std::string resolv_conf = "/etc/resolv.conf";
  bool write_resolv_conf = true;  // false: /etc/wsl.conf [network] generateResolvConf=false
};

// Writes a temporary file beside `path` and renames it over `path` (errno set on failure):
// readers see the old or the new file, never half of one; a symlink at `path` is replaced,
// not followed.
bool replace_file(const std::string& path, std::string_view text);

// Brings `link` up (no addresses); used for lo at boot. Returns errno or 0.
int set_link_up(std::string_view link);

NetReport apply_net_config(const NetConfig& cfg, const NetTarget& target);
// Rewrites target.resolv_conf from a DnsConfig (`ipv6`: the link has IPv6, from the NetConfig).
NetReport apply_dns_config(const DnsConfig& dns, bool ipv6, const NetTarget& target);

// DHCP fallback: busybox udhcpc with the image's hook script, bounded in time.
NetReport run_dhcp(const NetTarget& target, std::chrono::seconds timeout = std::chrono::seconds(15));

}  // namespace causeway::agent::guest
