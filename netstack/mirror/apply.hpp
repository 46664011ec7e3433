// Mirrored mode: applying diff operations to a guest network namespace with
// libnl, and reading the guest's actual state back.
//
// Reads go through a NETLINK_ROUTE socket made inside the guest namespace by
// NamespaceSocketFactory (netstack/netns_sockets.hpp); every change goes
// through that factory's helper process, because the kernel checks
// CAP_NET_ADMIN of the process that *sends* an rtnetlink change, makes a tap
// (TUNSETIFF) or writes a sysctl, and the engine has confined itself without
// any capability: libnl builds each request, the helper sends it and returns
// the kernel's answer; taps and /proc/sys/net/ipv6/conf/NAME/* writes are
// helper requests of their own.
//
// Guest links are **taps**: they must carry traffic once the mirrored data
// path exists, and tun/tap cannot be made over rtnetlink, only with
// TUNSETIFF on a /dev/net/tun descriptor — one opened inside the namespace
// makes the device there. The applier holds each tap's descriptor: the link
// lives exactly as long as that (closing it removes the device, which is how
// a link is removed), and nothing of a crashed causeway stays behind. Before
// the link comes up it gets accept_ra=0, accept_dad=0, use_tempaddr=0 and
// addr_gen_mode=1 (none: no kernel-made link-local address), so the guest
// never autoconfigures on it; addresses are added with IFA_F_NODAD.
// txqueuelen is kTapTxQueue, set explicitly: at 64 frames (tried first) a
// burst at MTU 1500 overflowed it and guest→host TCP crawled at 2 Mbit/s
// through drop-and-retransmit (bench-mirror.sh).
//
// Hook for the data path: `on_link_created` receives MirroredLinkCreated
// (name, guest ifindex, the tap descriptor — the applier keeps ownership;
// dup() it to keep it) right after a link is up; `on_link_removed` before
// the descriptor is closed.
//
// Errors: every operation runs; each failure is one OpError (operation and
// kernel message) in the report. "Already there" on an add and "not there"
// on a remove count as success — the state is what was asked for.
//
// Managed state: read_actual() returns only the links this applier created
// (and their addresses and routes outside the local table); other guest
// links (lo, the NAT tap) are reported by name in unmanaged_links() and
// never touched.
//
// Thread safety: confined to one thread (the engine executor); netlink
// requests block briefly on the local kernel.
#pragma once

#include <boost/system/result.hpp>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "netstack/mirror/converge.hpp"
#include "netstack/mirror/host_view.hpp"
#include "netstack/mirror/plan.hpp"

namespace causeway::netstack {
class NamespaceSocketFactory;
}

namespace causeway::netstack::mirror {

inline constexpr unsigned kTapTxQueue = 1000;  // frames queued on a tap before the kernel drops (the default for taps)

struct MirroredLinkCreated {
  std::string name;
  int ifindex = 0;
  int tap_fd = -1;  // owned by the applier
  uint32_t mtu = 1500;
  int host_ifindex = 0;  // the host link it mirrors
};

struct ApplyHooks {
  std::function<void(const MirroredLinkCreated&)> on_link_created;
  std::function<void(const std::string& name)> on_link_removed;
  std::function<void(const std::string& name, uint32_t mtu)> on_link_mtu;  // after every successful link update
  // Create the taps with IFF_VNET_HDR: whoever reads them (TapFramePort) negotiates checksum and
  // TSO offloads, so the guest's TCP arrives as 64 KiB super-segments instead of one frame per MSS.
  bool vnet_hdr_taps = false;
};

// Both the synchronous StateApplier (converge.hpp's loop runs over it) and
// the GuestApplier MirrorSyncer drives: a namespace converges at once, so
// converge() calls its callback before it returns.
class NetlinkGuestApplier final : public StateApplier, public GuestApplier {
 public:
  // `ns` must outlive the applier.
  static boost::system::result<std::unique_ptr<NetlinkGuestApplier>, std::string> open(NamespaceSocketFactory& ns,
                                                                                       ApplyHooks hooks = {});
  ~NetlinkGuestApplier() override;
  NetlinkGuestApplier(const NetlinkGuestApplier&) = delete;
  NetlinkGuestApplier& operator=(const NetlinkGuestApplier&) = delete;

  // The managed part of the guest's state (see above).
  boost::system::result<NetState, std::string> read_actual();
  // Guest links not created here, as of the last read_actual().
  [[nodiscard]] const std::set<std::string>& unmanaged_links() const override { return unmanaged_; }
  ApplyReport apply(const std::vector<Op>& ops) override;
  std::optional<std::string> read_managed(NetState& out) override;
  void converge(DesiredFn desired, std::function<void(ConvergeResult)> done) override;
  [[nodiscard]] std::string_view mechanism() const override { return "netns"; }
  [[nodiscard]] size_t managed_link_count() const { return taps_.size(); }

 private:
  NetlinkGuestApplier(NamespaceSocketFactory& ns, NlSocket sk, ApplyHooks hooks)
      : ns_(ns), sk_(std::move(sk)), hooks_(std::move(hooks)) {}
  boost::system::result<bool, std::string> run(const Op& op);
  boost::system::result<void, std::string> add_link(const HostLink& l);
  boost::system::result<void, std::string> set_link(const HostLink& l);
  boost::system::result<void, std::string> remove_link(const HostLink& l);
  boost::system::result<bool, std::string> change_address(const HostAddress& a, bool add);
  boost::system::result<bool, std::string> change_route(const HostRoute& r, bool add);
  int ifindex_of(const std::string& name);

  struct Tap {
    UniqueFd fd;
    int ifindex = 0;
  };
  NamespaceSocketFactory& ns_;
  NlSocket sk_;
  ApplyHooks hooks_;
  std::map<std::string, Tap> taps_;
  std::map<std::string, int> ifindexes_;  // every guest link, as of the last read
  std::set<std::string> unmanaged_;
  ReadCounters read_counters_;
};

}  // namespace causeway::netstack::mirror
