#include "vmm/vhost_user/session.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "vmm/virtio_spec.hpp"

namespace causeway::vmm::vhost_user {

namespace {

using Reply = std::optional<std::vector<uint8_t>>;

bool is_pow2(uint32_t n) { return n != 0 && (n & (n - 1)) == 0; }

// Requests whose reply body is defined by the request itself; REPLY_ACK adds
// nothing to them (vhost-user.rst, "REPLY_ACK").
bool has_own_reply(uint32_t r) {
  switch (static_cast<Request>(r)) {
    case Request::kGetFeatures:
    case Request::kGetProtocolFeatures:
    case Request::kGetVringBase:
    case Request::kGetQueueNum:
    case Request::kGetConfig:
    case Request::kGetMaxMemSlots:
    case Request::kGetStatus: return true;
    default: return false;
  }
}

}  // namespace

Session::Session(boost::asio::io_context& io, const Clock& clock, VirtioDevice& device, std::string name)
    : io_(io), clock_(clock), device_(device), name_(std::move(name)) {
  rings_.reserve(device_.queue_count());
  for (size_t i = 0; i < device_.queue_count(); ++i) rings_.push_back(std::make_unique<Ring>(memory_));
}

Session::~Session() {
  *alive_ = false;
  for (size_t i = 0; i < rings_.size(); ++i) stop_ring(i);
  device_.reset();
}

uint64_t Session::offered_protocol_features(const VirtioDevice& device) {
  uint64_t f = kPfReplyAck;
  if (device.device_id() == virtio::kDeviceIdNet) {
    // QEMU serves virtio-net config space itself (from -device mac=, host_mtu=)
    // and warns about a back-end offering CONFIG for it; it reports the MTU
    // through NET_SET_MTU instead.
    f |= kPfNetMtu;
  } else if (device.config_size() > 0) {
    f |= kPfConfig;  // vhost-user-vsock reads guest_cid through GET_CONFIG
  }
  return f;
}

const VirtqueueStats* Session::queue_stats(size_t i) const {
  return i < rings_.size() ? &rings_[i]->queue.stats() : nullptr;
}

Session::Outcome Session::handle(Message msg) {
  ++stats_.messages;
  const uint32_t req = msg.request;
  const bool ack = (protocol_features_ & kPfReplyAck) && msg.need_reply() && !has_own_reply(req);
  Result r = dispatch(msg);
  Outcome out;
  if (r.has_value()) {
    out.reply = std::move(*r);
    if (ack && !out.reply) out.reply = encode_u64_reply(req, 0);
    return out;
  }
  ++stats_.rejected;
  out.error = fmt::format("{}: {}", to_string(static_cast<Request>(req)), r.error());
  if (ack) {
    out.reply = encode_u64_reply(req, 1);
  } else {
    out.close = true;
  }
  return out;
}

Session::Result Session::dispatch(Message& msg) {
  const auto req = static_cast<Request>(msg.request);
  switch (req) {
    case Request::kGetFeatures:
      if (!msg.payload.empty() && msg.payload.size() != 8) return std::string("unexpected payload");
      return Reply(encode_u64_reply(msg.request, device_.offered_features() | kFProtocolFeatures));
    case Request::kSetFeatures: return on_set_features(msg);
    case Request::kGetProtocolFeatures: return Reply(encode_u64_reply(msg.request, offered_protocol_features(device_)));
    case Request::kSetProtocolFeatures: return on_set_protocol_features(msg);
    case Request::kSetOwner: return Reply{};
    case Request::kResetOwner:
      // Deprecated; vhost-user.rst recommends treating it as "disable all rings".
      for (size_t i = 0; i < rings_.size(); ++i) {
        rings_[i]->enabled = false;
        update_attachment(i);
      }
      return Reply{};
    case Request::kSetMemTable: return on_set_mem_table(msg);
    case Request::kSetVringNum: return on_vring_num(msg);
    case Request::kSetVringAddr: return on_vring_addr(msg);
    case Request::kSetVringBase: return on_vring_base(msg);
    case Request::kGetVringBase: return on_get_vring_base(msg);
    case Request::kSetVringKick: return on_vring_kick(msg);
    case Request::kSetVringCall: return on_vring_call(msg, false);
    case Request::kSetVringErr: return on_vring_call(msg, true);
    case Request::kSetVringEnable: return on_vring_enable(msg);
    case Request::kGetQueueNum:
      // Only meaningful with PROTOCOL_F_MQ, which we do not offer; answer anyway.
      return Reply(encode_u64_reply(msg.request, device_.queue_count()));
    case Request::kGetConfig: return on_get_config(msg);
    case Request::kSetConfig:
      // Our devices' config spaces are read-only to the driver (net: mac is
      // writable only for legacy drivers; vsock: guest_cid is read-only).
      return std::string("config space is read-only");
    case Request::kNetSetMtu: return on_net_set_mtu(msg);
    default: ++stats_.unsupported; return fmt::format("unsupported request {} ({})", msg.request, to_string(req));
  }
}

Session::Result Session::on_set_features(const Message& m) {
  auto v = parse_u64(m);
  if (v.has_error()) return v.error();
  const uint64_t offered = device_.offered_features() | kFProtocolFeatures;
  if (*v & ~offered) return fmt::format("features {:#x} include bits never offered ({:#x})", *v, *v & ~offered);
  acked_features_ = *v;
  features_set_ = true;
  device_.set_acked_features(*v & ~kFProtocolFeatures);
  for (size_t i = 0; i < rings_.size(); ++i) {
    rings_[i]->queue.set_features(*v);
    // Without protocol features rings are enabled as soon as they start.
    // (Older front-ends negotiate protocol features without echoing bit 30
    // here; a front-end that sent SET_PROTOCOL_FEATURES manages enables.)
    if (!(*v & kFProtocolFeatures) && !protocol_features_set_ && !rings_[i]->enabled) {
      rings_[i]->enabled = true;
      update_attachment(i);
    }
  }
  return Reply{};
}

Session::Result Session::on_set_protocol_features(const Message& m) {
  auto v = parse_u64(m);
  if (v.has_error()) return v.error();
  const uint64_t offered = offered_protocol_features(device_);
  if (*v & ~offered) return fmt::format("protocol features {:#x} include bits never offered", *v);
  protocol_features_ = *v;
  protocol_features_set_ = true;
  return Reply{};
}

boost::system::result<Session::Ring*, std::string> Session::ring_at(uint32_t index) {
  if (index >= rings_.size()) return fmt::format("ring {} does not exist (device has {})", index, rings_.size());
  return rings_[index].get();
}

boost::system::result<VirtqueueLayout, std::string> Session::layout_for(
    const Ring& r, const std::function<std::optional<uint64_t>(uint64_t, uint64_t)>& uva_to_gpa) {
  if (!r.addr) return std::string("ring addresses not set");
  if (r.num == 0) return std::string("ring size not set");
  auto desc = uva_to_gpa(r.addr->desc_user_addr, virtio::desc_table_bytes(r.num));
  auto avail = uva_to_gpa(r.addr->avail_user_addr, virtio::avail_ring_bytes(r.num));
  auto used = uva_to_gpa(r.addr->used_user_addr, virtio::used_ring_bytes(r.num));
  if (!desc || !avail || !used)
    return fmt::format("ring {} outside guest RAM (desc {:#x}, avail {:#x}, used {:#x}, size {})", r.addr->index,
                       r.addr->desc_user_addr, r.addr->avail_user_addr, r.addr->used_user_addr, r.num);
  return VirtqueueLayout{r.num, *desc, *avail, *used};
}

Session::Result Session::on_set_mem_table(Message& m) {
  auto specs = parse_mem_table(m);
  if (specs.has_error()) return specs.error();
  // Refuse a table that would strand a configured ring: check against the
  // new regions before replacing anything.
  if (auto v = GuestMemory::validate_specs(*specs); v.has_error()) return v.error();
  const auto in_new_table = [&](uint64_t uva, uint64_t len) { return GuestMemory::uva_to_gpa(*specs, uva, len); };
  for (auto& ring : rings_)
    if (ring->addr && ring->num != 0)
      if (auto l = layout_for(*ring, in_new_table); l.has_error()) return "new table: " + l.error();
  auto mapped = memory_.map_regions(*specs, m.fds);
  if (mapped.has_error()) return mapped.error();
  ++stats_.mem_tables;
  for (auto& ring : rings_) {
    if (!(ring->addr && ring->num != 0)) continue;
    auto l = layout_for(*ring, mem_lookup());
    if (l.has_value()) (void)ring->queue.set_layout(*l);  // re-resolved lazily on the next access
  }
  spdlog::debug("{}: memory table: {} region(s), {} MiB", name_, memory_.region_count(), memory_.total_bytes() >> 20);
  return Reply{};
}

std::function<std::optional<uint64_t>(uint64_t, uint64_t)> Session::mem_lookup() const {
  return [this](uint64_t uva, uint64_t len) { return memory_.uva_to_gpa(uva, len); };
}

Session::Result Session::on_vring_num(const Message& m) {
  auto s = parse_vring_state(m);
  if (s.has_error()) return s.error();
  auto r = ring_at(s->index);
  if (r.has_error()) return r.error();
  if ((*r)->started) return fmt::format("ring {} is running", s->index);
  if (!is_pow2(s->num) || s->num > device_.max_queue_size())
    return fmt::format("ring size {} is not a power of two up to {}", s->num, device_.max_queue_size());
  (*r)->num = s->num;
  return Reply{};
}

Session::Result Session::on_vring_addr(const Message& m) {
  auto a = parse_vring_addr(m);
  if (a.has_error()) return a.error();
  auto r = ring_at(a->index);
  if (r.has_error()) return r.error();
  Ring& ring = **r;
  // VHOST_VRING_F_LOG needs VHOST_F_LOG_ALL, which we never offer.
  if (a->flags != 0) return fmt::format("ring flags {:#x} (logging not supported)", a->flags);
  const auto previous = ring.addr;
  ring.addr = *a;
  auto l = layout_for(ring, mem_lookup());
  if (l.has_error()) {
    ring.addr = previous;
    return l.error();
  }
  if (auto s = ring.queue.set_layout(*l); s.has_error()) {
    ring.addr = previous;
    return s.error();
  }
  return Reply{};
}

Session::Result Session::on_vring_base(const Message& m) {
  auto s = parse_vring_state(m);
  if (s.has_error()) return s.error();
  auto r = ring_at(s->index);
  if (r.has_error()) return r.error();
  if ((*r)->started) return fmt::format("ring {} is running", s->index);
  if (s->num > 0xffff) return fmt::format("base {} does not fit a split ring index", s->num);
  (*r)->base = static_cast<uint16_t>(s->num);
  return Reply{};
}

Session::Result Session::on_get_vring_base(const Message& m) {
  auto s = parse_vring_state(m);
  if (s.has_error()) return s.error();
  auto r = ring_at(s->index);
  if (r.has_error()) return r.error();
  Ring& ring = **r;
  const uint16_t next = ring.started ? ring.queue.next_avail() : ring.base;
  stop_ring(s->index);
  ring.base = next;
  return Reply(encode_vring_state_reply(m.request, VringState{s->index, next}));
}

boost::system::result<void, std::string> Session::start_ring(size_t i) {
  Ring& ring = *rings_[i];
  if (memory_.empty()) return std::string("no memory table");
  auto l = layout_for(ring, mem_lookup());
  if (l.has_error()) return l.error();
  if (auto s = ring.queue.set_layout(*l); s.has_error()) return s.error();
  ring.queue.set_features(acked_features_);
  ring.queue.set_next_avail(ring.base);
  if (auto s = ring.queue.start(); s.has_error()) return s.error();
  Ring* rp = &ring;
  ring.queue.set_on_interrupt([this, rp] {
    ++stats_.interrupts;
    signal(rp->call);
  });
  ring.queue.set_on_broken([this, rp, i](std::string_view why) {
    ++stats_.broken_queues;
    if (guest_log_.allow(clock_.now_ms()))
      spdlog::warn("{}: queue {} broken by the guest: {} ({} similar suppressed)", name_, i, why,
                   guest_log_.suppressed());
    signal(rp->err);
  });
  ring.started = true;
  return {};
}

void Session::stop_ring(size_t i) {
  Ring& ring = *rings_[i];
  ring.started = false;
  update_attachment(i);
  ring.queue.stop();
  if (ring.kick) {
    boost::system::error_code ec;
    ring.kick->cancel(ec);
    ring.kick.reset();  // closes the fd
  }
  ring.kick_pending = false;
}

void Session::update_attachment(size_t i) {
  Ring& ring = *rings_[i];
  const bool want = ring.started && ring.enabled;
  if (want && !ring.attached) {
    ring.attached = true;
    device_.queue_attached(i, ring.queue);
    // Buffers made available before the queue came up (or kicks that came
    // while it was disabled) would otherwise wait for the next kick.
    ring.kick_pending = false;
    device_.queue_notified(i);
  } else if (!want && ring.attached) {
    ring.attached = false;
    device_.queue_detached(i);
  }
}

Session::Result Session::on_vring_kick(Message& m) {
  auto f = parse_vring_file(m);
  if (f.has_error()) return f.error();
  auto r = ring_at(f->index);
  if (r.has_error()) return r.error();
  if (f->no_fd) return std::string("polling mode (no kick fd) is not supported");
  // A new kick fd restarts the ring (QEMU sends one per start).
  if ((*r)->started) stop_ring(f->index);
  auto desc = std::make_unique<boost::asio::posix::stream_descriptor>(io_, m.fds[0].release());
  boost::system::error_code ec;
  desc->non_blocking(true, ec);
  (*r)->kick = std::move(desc);
  if (auto s = start_ring(f->index); s.has_error()) {
    (*r)->kick.reset();
    return s.error();
  }
  arm_kick(f->index);
  update_attachment(f->index);
  return Reply{};
}

void Session::arm_kick(size_t i) {
  Ring& ring = *rings_[i];
  if (!ring.kick) return;
  std::weak_ptr<bool> alive = alive_;
  auto* desc = ring.kick.get();
  desc->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                   [this, alive, i, desc](boost::system::error_code ec) {
                     if (ec == boost::asio::error::operation_aborted || alive.expired()) return;
                     // The ring may have been restarted with another descriptor meanwhile.
                     if (rings_[i]->kick.get() != desc) return;
                     if (ec) {
                       spdlog::warn("{}: kick fd of queue {}: {}", name_, i, ec.message());
                       return;
                     }
                     on_kick(i);
                   });
}

void Session::on_kick(size_t i) {
  Ring& ring = *rings_[i];
  uint64_t v;
  // Drain the eventfd (non-blocking): one wake-up per batch of kicks.
  while (::read(ring.kick->native_handle(), &v, sizeof v) == static_cast<ssize_t>(sizeof v)) {}
  ++stats_.kicks;
  if (ring.attached) {
    device_.queue_notified(i);
  } else {
    ring.kick_pending = true;
  }
  // queue_notified may not restart or stop this ring (it has no way to), so
  // the descriptor is still ours.
  if (ring.kick) arm_kick(i);
}

void Session::signal(const UniqueFd& fd) {
  if (!fd) return;
  const uint64_t one = 1;
  // An eventfd write fails only if the counter would overflow (EAGAIN):
  // the front-end has 2^64-2 interrupts pending already, one more is moot.
  (void)!::write(fd.get(), &one, sizeof one);
}

Session::Result Session::on_vring_call(Message& m, bool error_fd) {
  auto f = parse_vring_file(m);
  if (f.has_error()) return f.error();
  auto r = ring_at(f->index);
  if (r.has_error()) return r.error();
  UniqueFd fd = f->no_fd ? UniqueFd() : std::move(m.fds[0]);
  (error_fd ? (*r)->err : (*r)->call) = std::move(fd);
  return Reply{};
}

Session::Result Session::on_vring_enable(const Message& m) {
  auto s = parse_vring_state(m);
  if (s.has_error()) return s.error();
  auto r = ring_at(s->index);
  if (r.has_error()) return r.error();
  // QEMU sends this as soon as the back-end *offers* protocol features
  // (before SET_FEATURES), which we always do: no negotiation check here.
  if (s->num > 1) return fmt::format("enable value {}", s->num);
  (*r)->enabled = s->num == 1;
  update_attachment(s->index);
  return Reply{};
}

Session::Result Session::on_get_config(const Message& m) {
  auto c = parse_config(m);
  if (c.has_error()) return c.error();
  std::vector<uint8_t> payload(12 + size_t{c->size});
  std::memcpy(payload.data(), m.payload.data(), 12);
  if (!device_.read_config(c->offset, std::span<uint8_t>(payload).subspan(12))) {
    // vhost-user.rst: a zero-length payload tells the front-end it failed.
    ++stats_.rejected;
    return Reply(encode_reply(m.request, {}));
  }
  return Reply(encode_reply(m.request, payload));
}

Session::Result Session::on_net_set_mtu(const Message& m) {
  auto v = parse_u64(m);
  if (v.has_error()) return v.error();
  if (*v > 0xffffffffull || !device_.set_link_mtu(static_cast<uint32_t>(*v)))
    return fmt::format("MTU {} not supported by the device", *v);
  return Reply{};
}

}  // namespace causeway::vmm::vhost_user
