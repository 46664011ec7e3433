// Mirrored mode inside the VM: the guest agent's applier.
//
// The host's MirrorSyncer plans the guest's links from the host's and sends
// the desired state as a MirrorApply; the agent runs the same converge loop
// (netstack/mirror/converge.hpp: read, diff, apply — the same diff code the
// namespace path uses) over MacvlanGuestApplier and answers a MirrorReport.
//
// Guest links are **macvlans** (mode private) on the parent link (eth0, the
// single virtio-net): one per mirrored host link, with the mirrored name, the
// plan's MAC (02:43:57:4d:XX:XX from the host ifindex — the host demultiplexes
// the guest's frames by that source MAC), MTU, addresses and routes. Private
// mode: mirrored links never talk to each other inside the guest. Before a
// link comes up: accept_ra=0, accept_dad=0, use_tempaddr=0, addr_gen_mode=1
// (no autoconfiguration, no kernel link-local); addresses carry IFA_F_NODAD.
// Needs macvlan.ko (CONFIG_MACVLAN=m in Debian's cloud kernel; the image
// loads it, scripts/build-guest.sh). A macvlan's MTU cannot exceed its
// parent's: the parent's MTU is raised first when a host link needs more.
//
// Managed state: what this applier made and the kernel accepted, kept in
// memory (no libnl to parse dumps with in the static agent); read_managed()
// drops links that disappeared (checked by name) with their addresses and
// routes. A change made inside the guest to a mirrored link's addresses is
// therefore not repaired — the namespace path reads the kernel back instead.
//
// Untrusted input: the MirrorApply was validated on decode (names, families,
// caps: vmm/agent/protocol.hpp); the host is trusted by the agent anyway.
//
// Thread safety: single-threaded (the agent's loop).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "netstack/mirror/converge.hpp"
#include "vmm/agent/protocol.hpp"

namespace causeway::agent::guest {

class MacvlanGuestApplier final : public netstack::mirror::StateApplier {
 public:
  // nullptr when no rtnetlink socket can be opened (error says why).
  static std::unique_ptr<MacvlanGuestApplier> open(std::string parent, std::string& error);

  std::optional<std::string> read_managed(netstack::mirror::NetState& out) override;
  [[nodiscard]] const std::set<std::string>& unmanaged_links() const override { return unmanaged_; }
  netstack::mirror::ApplyReport apply(const std::vector<netstack::mirror::Op>& ops) override;

 private:
  MacvlanGuestApplier(std::string parent, UniqueFd nl) : parent_(std::move(parent)), nl_(std::move(nl)) {}
  // 0: done; -1: already so ("exists" / "not there"); else a positive errno, with `what` set.
  int run(const netstack::mirror::Op& op, std::string& what);
  int add_link(const netstack::mirror::HostLink& l, std::string& what);
  int set_link(const netstack::mirror::HostLink& l, std::string& what);
  int change_address(const netstack::mirror::HostAddress& a, bool add);
  int change_route(const netstack::mirror::HostRoute& r, bool add);
  int ifindex_of(const std::string& name) const;

  std::string parent_;
  UniqueFd nl_;
  uint32_t seq_ = 1;
  netstack::mirror::NetState applied_;
  std::set<std::string> unmanaged_;
};

// One MirrorApply, converged; the report to send back (bounded: errors cut to
// kMaxMirrorErrors, texts to kMaxMirrorErrorText).
MirrorReport apply_mirror(netstack::mirror::StateApplier& guest, const MirrorApply& m);

}  // namespace causeway::agent::guest
