#include "netstack/frame_demux.hpp"

#include <algorithm>

namespace causeway::netstack {

bool FrameDemux::add(const Mac& mac, FrameSink& sink) {
  if (!by_mac_.count(mac) && by_mac_.size() >= kMaxEntries) {
    ++stats_.refused;
    return false;
  }
  by_mac_[mac] = &sink;
  return true;
}

void FrameDemux::on_guest_frame(std::span<const uint8_t> frame) {
  constexpr size_t kSrcMacOffset = 6;  // IEEE 802.3: destination (6), source (6), type (2)
  if (frame.size() >= kSrcMacOffset + 6 && !by_mac_.empty()) {
    Mac src;
    std::copy_n(frame.begin() + kSrcMacOffset, 6, src.begin());
    if (auto it = by_mac_.find(src); it != by_mac_.end()) {
      ++stats_.to_links;
      it->second->on_guest_frame(frame);
      return;
    }
  }
  if (!default_) {
    ++stats_.no_default;
    return;
  }
  ++stats_.to_default;
  default_->on_guest_frame(frame);
}

}  // namespace causeway::netstack
