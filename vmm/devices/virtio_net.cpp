#include "vmm/devices/virtio_net.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "vmm/devices/net_offload.hpp"
#include "vmm/virtio_spec.hpp"

namespace causeway::vmm {

namespace {

constexpr uint16_t kStatusLinkUp = 1;  // §5.1.4: VIRTIO_NET_S_LINK_UP
constexpr size_t kVlanSlack = 4;       // an 802.1Q tag the guest may add

// Copies `len` bytes starting at byte `offset` of the chain's readable
// buffers into `out`. The caller checked offset + len <= readable_bytes.
void gather(const DescriptorChain& c, size_t offset, size_t len, uint8_t* out) {
  for (const auto& b : c.readable) {
    if (len == 0) return;
    if (offset >= b.size()) {
      offset -= b.size();
      continue;
    }
    const size_t n = std::min(b.size() - offset, len);
    // SAFETY: b is a span GuestMemory::slice validated inside guest RAM.
    std::memcpy(out, b.data() + offset, n);
    out += n;
    len -= n;
    offset = 0;
  }
}

}  // namespace

VirtioNetDevice::VirtioNetDevice(boost::asio::io_context& io, const Clock& clock, VirtioNetConfig cfg)
    : io_(io), clock_(clock), cfg_(cfg) {}

VirtioNetDevice::~VirtioNetDevice() { *alive_ = false; }

uint32_t VirtioNetDevice::device_id() const { return virtio::kDeviceIdNet; }

uint64_t VirtioNetDevice::offered_features() const {
  return virtio::kFVersion1 | virtio::kFIndirectDesc | virtio::kFEventIdx | net::kFMac | net::kFMtu | net::kFMrgRxbuf |
         net::kFCsum | net::kFGuestCsum | net::kFStatus;
}

bool VirtioNetDevice::read_config(uint32_t offset, std::span<uint8_t> out) const {
  // §5.1.4: struct virtio_net_config { u8 mac[6]; le16 status; le16 max_virtqueue_pairs; le16 mtu; }
  std::array<uint8_t, 12> cfg{};
  std::memcpy(cfg.data(), cfg_.mac.data(), 6);
  const uint16_t status = kStatusLinkUp;
  const uint16_t pairs = 1;
  std::memcpy(cfg.data() + 6, &status, 2);
  std::memcpy(cfg.data() + 8, &pairs, 2);
  std::memcpy(cfg.data() + 10, &cfg_.mtu, 2);
  if (offset > cfg.size() || out.size() > cfg.size() - offset) return false;
  std::memcpy(out.data(), cfg.data() + offset, out.size());
  return true;
}

bool VirtioNetDevice::set_link_mtu(uint32_t mtu) {
  // The front-end's MTU (QEMU's host_mtu) must not exceed what the engine
  // carries; RFC 791's 68 is the floor for IPv4.
  if (mtu < 68 || mtu > cfg_.mtu) {
    ++stats_.link_mtu_refused;
    spdlog::warn("virtio-net: front-end MTU {} refused (the engine's MTU is {})", mtu, cfg_.mtu);
    return false;
  }
  return true;
}

void VirtioNetDevice::set_acked_features(uint64_t features) {
  acked_ = features & offered_features();
  hdr_len_ = net::header_len(acked_);
}

void VirtioNetDevice::queue_attached(size_t index, Virtqueue& queue) {
  if (index == kRxQueue) {
    rx_ = &queue;
    rx_->disable_notifications();  // kicks are wanted only while frames wait for buffers
  } else if (index == kTxQueue) {
    tx_ = &queue;
  }
}

void VirtioNetDevice::queue_detached(size_t index) {
  if (index == kRxQueue) {
    rx_ = nullptr;
    backlog_.clear();
    backlog_bytes_ = 0;
  } else if (index == kTxQueue) {
    tx_ = nullptr;
  }
}

void VirtioNetDevice::queue_notified(size_t index) {
  if (index == kTxQueue) {
    process_tx();
  } else if (index == kRxQueue) {
    flush_backlog();
  }
}

void VirtioNetDevice::reset() {
  rx_ = tx_ = nullptr;
  backlog_.clear();
  backlog_bytes_ = 0;
  acked_ = 0;
  hdr_len_ = net::kHdrLen;
}

void VirtioNetDevice::log_guest(std::string_view what) {
  if (log_.allow(clock_.now_ms())) spdlog::warn("virtio-net: {} ({} similar suppressed)", what, log_.suppressed());
}

// ---------------------------------------------------------------- transmit

void VirtioNetDevice::process_tx() {
  tx_posted_ = false;
  if (tx_ == nullptr) return;
  int budget = kTxBudget;
  for (;;) {
    tx_->disable_notifications();
    for (; budget > 0; --budget) {
      const auto r = tx_->pop(tx_chain_);
      if (r == Virtqueue::Pop::kEmpty) break;
      if (r == Virtqueue::Pop::kBroken) {
        ++stats_.broken_queue;
        return;
      }
      handle_tx_chain(tx_chain_);
      if (tx_ == nullptr) return;  // detached from inside the sink (not expected, but cheap to honour)
    }
    if (budget == 0) {
      // More may be waiting: give the rest of the loop a turn first.
      tx_->notify();
      if (!tx_posted_) {
        tx_posted_ = true;
        std::weak_ptr<bool> alive = alive_;
        boost::asio::post(io_, [this, alive] {
          if (!alive.expired()) process_tx();
        });
      }
      return;
    }
    // §2.7.10: re-enable kicks, then look once more for a race with the driver.
    if (!tx_->enable_notifications()) break;
  }
  tx_->notify();
}

void VirtioNetDevice::handle_tx_chain(const DescriptorChain& c) {
  const auto done = [&] { tx_->push_used(c.head, 0); };
  if (!c.ok()) {
    ++stats_.tx_malformed;
    log_guest("bad transmit chain");
    return done();
  }
  if (c.readable_bytes < hdr_len_ || !c.writable.empty()) {
    ++stats_.tx_malformed;
    log_guest("transmit chain without a header (or with writable buffers)");
    return done();
  }
  std::array<uint8_t, wire::kVnetHdrLen> hb{};
  gather(c, 0, hdr_len_, hb.data());
  const wire::VnetHdr h = wire::read_vnet_hdr(hb, hdr_len_);
  if (h.gso_type != wire::kVnetGsoNone) {
    ++stats_.tx_malformed;
    log_guest("GSO frame, but no segmentation offload was offered");
    return done();
  }
  if ((h.flags & wire::kVnetFNeedsCsum) && !(acked_ & net::kFCsum)) {
    ++stats_.tx_malformed;
    log_guest("NEEDS_CSUM without VIRTIO_NET_F_CSUM");
    return done();
  }
  const size_t frame_len = static_cast<size_t>(c.readable_bytes - hdr_len_);
  if (frame_len > size_t{cfg_.mtu} + netstack::kEthHeaderLen + kVlanSlack) {
    ++stats_.tx_oversized;
    log_guest("oversized transmit frame");
    return done();
  }
  if (sink_ == nullptr) {
    ++stats_.tx_no_sink;
    return done();
  }
  hand_over(c, h, frame_len);
  done();
}

void VirtioNetDevice::hand_over(const DescriptorChain& c, const wire::VnetHdr& h, size_t frame_len) {
  const bool needs_csum = (h.flags & wire::kVnetFNeedsCsum) != 0;
  // In place when the frame is one contiguous piece of guest memory.
  std::span<const uint8_t> direct;
  if (c.readable.size() == 1) {
    direct = c.readable[0].subspan(hdr_len_);
  } else if (c.readable.size() == 2 && c.readable[0].size() == hdr_len_) {
    direct = c.readable[1];
  }
  const bool in_place = !needs_csum && cfg_.tx_zero_copy && direct.size() == frame_len && frame_len > 0;
  if (!in_place) {
    scratch_.resize(frame_len);
    gather(c, hdr_len_, frame_len, scratch_.data());
  }
  const std::span<const uint8_t> frame = in_place ? direct : std::span<const uint8_t>(scratch_);
  // The tap's checks (base/vnet_hdr.hpp): flags, hdr_len, checksum offsets.
  const wire::VnetCheck check = wire::check_vnet_hdr(h, frame, cfg_.mtu);
  if (check.verdict != wire::VnetVerdict::kOk) {
    ++stats_.tx_malformed;
    log_guest(wire::to_string(check.verdict));
    return;
  }
  if (needs_csum) {
    // SAFETY: check_vnet_hdr proved the checksum field lies inside the frame.
    wire::complete_checksum(scratch_, check.offload.csum_start, check.offload.csum_offset);
    ++stats_.tx_csum_completed;
  }
  ++stats_.tx_frames;
  if (in_place) ++stats_.tx_zero_copy;
  stats_.tx_bytes += frame_len;
  sink_->on_guest_frame(frame);
}

// ---------------------------------------------------------------- receive

void VirtioNetDevice::send_to_guest(std::span<const uint8_t> frame) {
  if (rx_ == nullptr) {
    ++stats_.rx_drops_not_ready;
    return;
  }
  if (frame.size() > size_t{cfg_.mtu} + netstack::kEthHeaderLen + kVlanSlack) {
    ++stats_.rx_drops_too_big;
    return;
  }
  if (backlog_.empty()) {
    switch (deliver(frame)) {
      case Rx::kDone:
      case Rx::kDropped: return;
      case Rx::kNoBuffers: break;
    }
  }
  if (backlog_.size() >= kRxBacklogFrames || backlog_bytes_ + frame.size() > kRxBacklogBytes) {
    ++stats_.rx_drops_no_buffers;
    return;
  }
  ++stats_.rx_backlogged;
  backlog_.emplace_back(frame.begin(), frame.end());
  backlog_bytes_ += frame.size();
  flush_backlog();
}

void VirtioNetDevice::flush_backlog() {
  if (rx_ == nullptr) return;
  for (;;) {
    while (!backlog_.empty()) {
      const Rx r = deliver(backlog_.front());
      if (r == Rx::kNoBuffers) break;
      backlog_bytes_ -= backlog_.front().size();
      backlog_.pop_front();
      if (rx_ == nullptr) return;
    }
    if (backlog_.empty()) {
      rx_->disable_notifications();
      return;
    }
    // Starved: ask for a kick on the next buffer the guest adds; if some
    // arrived meanwhile, try again (each round needs new buffers, so this ends).
    if (!rx_->request_notification_on_new_buffers()) return;
  }
}

VirtioNetDevice::Rx VirtioNetDevice::deliver(std::span<const uint8_t> frame) {
  const bool mergeable = (acked_ & net::kFMrgRxbuf) != 0;
  const size_t needed = hdr_len_ + frame.size();
  // Collect chains until they hold the header and the frame. Bad chains met
  // on the way are set aside and returned empty, before the frame's own
  // chains, so the frame's buffers stay consecutive in the used ring (the
  // driver reads num_buffers - 1 more used entries after the first).
  size_t good = 0;
  size_t bad = 0;
  uint64_t room = 0;
  const auto chain_at = [&](size_t i) -> DescriptorChain& {
    if (rx_chains_.size() <= i) rx_chains_.resize(i + 1);
    return rx_chains_[i];
  };
  std::vector<uint16_t> bad_heads;  // rare: allocate only when used
  while (room < needed) {
    DescriptorChain& c = chain_at(good);
    const auto r = rx_->pop(c);
    if (r == Virtqueue::Pop::kBroken) {
      ++stats_.broken_queue;
      return Rx::kDropped;
    }
    if (r == Virtqueue::Pop::kEmpty) {
      rx_->undo_pop(static_cast<uint16_t>(good + bad));
      return Rx::kNoBuffers;
    }
    if (!c.ok() || !c.readable.empty() || c.writable_bytes < (good == 0 ? hdr_len_ : 1)) {
      ++bad;
      bad_heads.push_back(c.head);
      continue;
    }
    room += c.writable_bytes;
    ++good;
    if (!mergeable && room < needed) {
      // Without MRG_RXBUF a frame must fit one chain; these buffers are
      // simply too small for this frame. Leave them for smaller frames.
      rx_->undo_pop(static_cast<uint16_t>(good + bad));
      ++stats_.rx_drops_too_big;
      return Rx::kDropped;
    }
  }
  for (uint16_t h : bad_heads) {
    ++stats_.rx_malformed;
    rx_->push_used(h, 0);
  }
  if (!bad_heads.empty()) log_guest("bad receive chain");

  wire::VnetHdr h;
  if ((acked_ & net::kFGuestCsum) && cfg_.rx_mark_data_valid) h.flags = wire::kVnetFDataValid;
  h.num_buffers = static_cast<uint16_t>(mergeable ? good : 1);
  std::array<uint8_t, wire::kVnetHdrLen> hb{};
  wire::write_vnet_hdr(hb, h, hdr_len_);

  scatter(std::span<const uint8_t>(hb.data(), hdr_len_), frame, good);
  rx_->publish_used();  // all of the frame's chains at once (see Virtqueue::add_used)
  ++stats_.rx_frames;
  stats_.rx_bytes += frame.size();
  stats_.rx_buffers += good;
  rx_->notify();
  return Rx::kDone;
}

void VirtioNetDevice::scatter(std::span<const uint8_t> hdr, std::span<const uint8_t> frame, size_t chains) {
  std::span<const uint8_t> pieces[2] = {hdr, frame};
  size_t piece = 0;
  size_t piece_off = 0;
  for (size_t i = 0; i < chains; ++i) {
    DescriptorChain& c = rx_chains_[i];
    uint32_t written = 0;
    for (auto& b : c.writable) {
      size_t boff = 0;
      while (boff < b.size() && piece < 2) {
        const auto& src = pieces[piece];
        const size_t n = std::min(b.size() - boff, src.size() - piece_off);
        // SAFETY: b is a device-writable span inside guest RAM
        // (GuestMemory::slice); n fits both b and src. An empty frame (a
        // backlogged one is an empty vector, data() == nullptr) copies nothing:
        // memcpy from a null pointer is undefined even for 0 bytes.
        if (n != 0) std::memcpy(b.data() + boff, src.data() + piece_off, n);
        boff += n;
        piece_off += n;
        written += static_cast<uint32_t>(n);
        if (piece_off == src.size()) {
          ++piece;
          piece_off = 0;
        }
      }
      if (piece == 2) break;
    }
    rx_->add_used(c.head, written);
  }
}

}  // namespace causeway::vmm
