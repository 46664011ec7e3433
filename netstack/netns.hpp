// Network-namespace attachment: create (or enter) a namespace, give it a tap
// device configured for the NAT network, and hand the tap's fd to the engine
// in the original namespace — the arrangement slirp4netns and pasta use.
//
//   causeway (host netns)                      child (new netns [+ userns, mountns])
//   ────────────────────                       ───────────────────────────────────
//   fork ───────────────────────────────────►  unshare(NEWUSER?|NEWNET|NEWNS), uid/gid map
//                                              lo up; tap0: MAC, MTU, sysctls, up,
//                                              10.0.2.15/24, default via 10.0.2.2
//                                              private /etc/resolv.conf (bind mount)
//   ◄──────────── tap fd (SCM_RIGHTS) ───────  send
//   engine serves the tap; "go" ────────────►  wait (bounded) for the SLAAC address
//                                              exec COMMAND
//   waitpid → exit with COMMAND's status
//
// Without root, the child first makes a user namespace mapping our uid to 0
// (a process may map its own ids: user_namespaces(7)), which owns the new
// network and mount namespaces — no privilege needed, as with slirp4netns.
// IPv4 is configured statically with the address DHCP would lease; IPv6 comes
// from the engine's router advertisements (SLAAC), with DAD and the RS delay
// turned off so the address is there before COMMAND starts.
//
// --attach enters an existing namespace (/proc/PID/ns/net, or a path such as
// /run/netns/NAME; without root also PID's user namespace) in a short-lived
// child that only creates and configures the tap.
//
// Must be called before the process starts threads (it forks).
#pragma once

#include <netinet/in.h>
#include <sys/types.h>

#include <boost/system/result.hpp>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "netstack/frame.hpp"

namespace causeway::netstack {

struct TapConfig {
  std::string ifname = "tap0";
  Mac mac{0x02, 0x43, 0x57, 0x00, 0x00, 0x0f};  // locally administered; "CW"
  size_t mtu = kMaxMtu;
  in_addr address{htonl(0x0a00020f)};
  uint8_t prefix_len = 24;
  in_addr gateway{htonl(0x0a000202)};
  // Mirrored mode's internal NAT link: no default route, and the address has
  // link scope (it is not one of "the guest's addresses"; DNS at 10.0.2.3
  // and the host's loopback at 10.0.2.2 stay reachable on-link).
  bool internal = false;
  // Create the tap with IFF_VNET_HDR: every frame carries a virtio-net header
  // (TapFramePort then negotiates checksum/TSO offloads).
  bool vnet_hdr = false;
  bool ipv6 = true;
  std::vector<std::string> nameservers{"10.0.2.3"};
  std::vector<std::string> search;
  // Trap bind/listen in COMMAND's process tree for automatic forwarding
  // (netns_listener_source.hpp); the notification fd comes back after release.
  bool trap_listeners = false;
  // The soft RLIMIT_NOFILE COMMAND starts with (0: inherit ours). causeway
  // raises its own to the hard limit; COMMAND gets the limit it would have had.
  uint64_t command_nofile_soft = 0;
};

struct SpawnedCommand {
  pid_t pid = -1;
  UniqueFd tap;
  UniqueFd control;              // release_child() writes "go" here; then the trap fd arrives on it
  std::string resolv_conf_path;  // temporary file, remove after the child exits
  UniqueFd resolv_conf;          // that file, open for rewriting (the confined engine has no path to it)
};

// Creates the namespace(s), the tap, and a child ready to exec `argv` once
// release_child() is called. Errors are one line, fit for the user.
boost::system::result<SpawnedCommand, std::string> spawn_in_new_namespace(const TapConfig& cfg,
                                                                          const std::vector<std::string>& argv);
// Lets the child continue (wait for IPv6, install the listener trap, exec).
void release_child(SpawnedCommand& cmd);
// After release_child: reads the listener trap's notification fd from
// `control` once the child sends it (call when `control` is readable).
// An error means the child exec'ed without a trap (or died).
boost::system::result<UniqueFd, std::string> receive_listener_trap(int control);

// Enters `target` (a PID or a namespace path) and returns a configured tap.
boost::system::result<UniqueFd, std::string> attach_to_namespace(const TapConfig& cfg, const std::string& target);

// Creates and configures a tap in the calling thread's network namespace.
// Exposed for tests that set up their own namespace.
boost::system::result<UniqueFd, std::string> create_configured_tap(const TapConfig& cfg);

// The namespace's resolv.conf text, and an in-place rewrite of the file
// behind its bind mount (search domains follow the host live) through a
// descriptor open for writing.
std::string render_resolv_conf(const std::vector<std::string>& nameservers, const std::vector<std::string>& search);
bool rewrite_resolv_conf(int fd, const std::string& text);

// The host replacing its /etc/resolv.conf (rename over it: NetworkManager,
// resolvconf, VPN clients) detaches the bind mount the namespace had on it
// (mounts on a dentry removed in another mount namespace are dropped). This
// checks, from `root_fd` (COMMAND's root, /proc/PID/root opened O_PATH),
// whether COMMAND still sees `file` at /etc/resolv.conf and, if not, binds it
// again from a short-lived child that enters `mnt_fd` (COMMAND's mount
// namespace; needs CAP_SYS_ADMIN over it and a single-threaded caller).
// Returns true when the namespace sees `file`. The namespace helper runs it
// (netns_sockets.hpp): the confined engine cannot fork or mount.
bool ensure_resolv_conf_bound(int root_fd, int mnt_fd, const std::string& file);

// Encodes a waitpid status as a shell would: the exit code, or 128 + signal.
int shell_status(int wait_status);

}  // namespace causeway::netstack
