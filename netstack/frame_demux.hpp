// Demultiplexes the frames of one guest NIC by source MAC: the VM's single
// virtio-net carries both eth0 (the NAT link) and, in mirrored mode, one
// macvlan per mirrored host link (vmm/agent/guest/mirror.hpp), each with its
// own MAC from the plan (02:43:57:4d:XX:XX). Frames whose source MAC names a
// registered link go to that link's sink (a mirror::MirrorLink); everything
// else — eth0's traffic, and whatever a guest forges — goes to the default
// sink (the NAT engine), which treats it as any guest frame. The reverse
// direction needs nothing here: every sink answers through the same
// FramePort (the virtio-net device), with the destination MAC of the guest
// link it serves.
//
// Trust: the source MAC is guest-chosen. A guest that sends with a mirrored
// link's MAC from eth0 reaches that link's data path — exactly what it could
// do from the macvlan itself; nothing is gained. Frames shorter than an
// Ethernet header go to the default sink, whose parser drops and counts them.
//
// Bounds: at most kMaxEntries links (the plan's kMaxLinks); registrations
// come from the host's plan, not the guest. Over the cap add() refuses.
//
// Thread safety: confined to the engine thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>

#include "netstack/frame.hpp"
#include "netstack/frame_port.hpp"

namespace causeway::netstack {

class FrameDemux final : public FrameSink {
 public:
  static constexpr size_t kMaxEntries = 64;
  struct Stats {
    uint64_t to_default = 0;
    uint64_t to_links = 0;
    uint64_t no_default = 0;  // before set_default (dropped)
    uint64_t refused = 0;     // add() over the cap
  };

  void set_default(FrameSink* sink) { default_ = sink; }
  // Frames from `mac` go to `sink` (replacing an earlier one); false over the cap.
  bool add(const Mac& mac, FrameSink& sink);
  void remove(const Mac& mac) { by_mac_.erase(mac); }
  [[nodiscard]] size_t size() const { return by_mac_.size(); }
  [[nodiscard]] const Stats& stats() const { return stats_; }

  void on_guest_frame(std::span<const uint8_t> frame) override;

 private:
  FrameSink* default_ = nullptr;
  std::map<Mac, FrameSink*> by_mac_;
  Stats stats_;
};

}  // namespace causeway::netstack
