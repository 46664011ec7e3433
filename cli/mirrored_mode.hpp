// Mirrored mode for the attachments that have it (`netns --mode mirrored`,
// `run --mode mirrored`): the host's links, addresses and routes follow into
// the guest, and each mirrored guest link gets a data path.
//
//   HostView ──► MirrorSyncer ──plan──► the attachment's GuestApplier
//                     │                 (netns: NetlinkGuestApplier; VM: AgentGuestApplier)
//                     └─on_plan──► MirrorLinkTable::set_plan (each link's allowed addresses)
//   the applier reports a link ──► MirrorLinkTable::make + insert (one MirrorLink per link)
//
// A MirrorLink (netstack/mirror/mirror_link.hpp) carries a link's frames out
// through host sockets bound to the guest's source address. It is built in
// one place (MirrorLinkTable::make) whatever carries its frames: its own tap
// (netns) or the VM's virtio-net, demultiplexed by MAC (cli/mirror_vm.hpp).
// A link may use only the addresses the last plan gave it: the plan is
// stored before the guest converges, and every new link starts with it.
//
// Destruction order: the syncer first, then the applier (whose destructor
// may report its links removed into the table), then the host view, then
// the links.
//
// Thread safety: confined to the engine thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/system/result.hpp>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "netstack/frame.hpp"
#include "netstack/frame_port.hpp"
#include "netstack/mirror/converge.hpp"
#include "netstack/mirror/mirror_link.hpp"
#include "netstack/mirror/host_view.hpp"
#include "netstack/mirror/syncer.hpp"

namespace causeway::cli {

class Runtime;

// One mirrored guest link's data path.
struct MirrorLinkEntry {
  std::unique_ptr<netstack::FramePort> port;           // its own port (netns: its tap); null on the VM's shared NIC
  netstack::Mac mac{};                                 // VM: the source MAC the demux routes to it
  std::unique_ptr<netstack::mirror::MirrorLink> link;  // declared after `port`: destroyed before it
};

// The mirrored links by guest link name, and the plan their addresses come from.
class MirrorLinkTable {
 public:
  explicit MirrorLinkTable(boost::asio::io_context& io) : io_(io) {}

  // The mirrored-link builder: a MirrorLink for guest link `name` (mirroring
  // host link `host_ifindex`) answering through `port`, allowed the
  // addresses the last plan gave the link. Not in the table until insert().
  [[nodiscard]] MirrorLinkEntry make(const std::string& name, int host_ifindex, size_t mtu,
                                     netstack::FramePort& port) const;
  void insert(const std::string& name, MirrorLinkEntry entry);
  void erase(const std::string& name) { links_.erase(name); }
  [[nodiscard]] MirrorLinkEntry* find(const std::string& name);
  void set_mtu(const std::string& name, size_t mtu);

  // A new plan: every link's addresses follow it.
  void set_plan(const netstack::mirror::NetState& desired);
  // {"<link>": MirrorLink stats, ...} for `mirror`'s "data_path".
  [[nodiscard]] nlohmann::json data_path_json() const;

  [[nodiscard]] std::map<std::string, MirrorLinkEntry>& entries() { return links_; }

 private:
  boost::asio::io_context& io_;
  std::map<std::string, MirrorLinkEntry> links_;
  netstack::mirror::NetState plan_;  // the last plan's desired state
};

// The control plane (host view, applier, syncer) and the data paths.
class MirroredMode {
 public:
  explicit MirroredMode(boost::asio::io_context& io);
  ~MirroredMode();
  MirroredMode(const MirroredMode&) = delete;
  MirroredMode& operator=(const MirroredMode&) = delete;

  [[nodiscard]] MirrorLinkTable& links() { return links_; }

  // Plans the guest's links from the host's and converges them through
  // `applier` (owned from now on); each plan reaches the links first.
  void follow(std::unique_ptr<netstack::mirror::GuestApplier> applier, netstack::mirror::PlanOptions options);
  // The first sync; then the syncer follows the host on its own.
  boost::system::result<void, std::string> start();
  // `status` shows mode "mirrored"; `mirror` answers the syncer's status with
  // the links' data paths, plus what `extend` adds (the VM's counters).
  void report_to(Runtime& rt, std::function<void(nlohmann::json&)> extend = nullptr);

 private:
  boost::asio::io_context& io_;
  MirrorLinkTable links_;
  netstack::mirror::HostView view_;
  std::unique_ptr<netstack::mirror::GuestApplier> applier_;
  std::unique_ptr<netstack::mirror::MirrorSyncer> syncer_;
};

}  // namespace causeway::cli
