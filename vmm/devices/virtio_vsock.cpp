#include "vmm/devices/virtio_vsock.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "vmm/virtio_spec.hpp"

namespace causeway::vmm {

namespace asio = boost::asio;
using vsock::Header;
using vsock::Op;

// ---------------------------------------------------------------- per-connection state

struct VirtioVsockDevice::Conn {
  enum class State { kConnecting, kEstablished };
  Key key = 0;
  uint64_t id = 0;  // distinguishes a reused (guest port, host port) pair
  uint32_t guest_port = 0;
  uint32_t host_port = 0;
  State state = State::kEstablished;
  Stream* stream = nullptr;  // the user's handle, not owned; nullptr once released
  VsockConnectHandler on_connect;
  std::unique_ptr<asio::steady_timer> timer;
  // Toward the guest (§5.10.6.3): its buffer, what it consumed, what we sent.
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  uint32_t tx_cnt = 0;
  // From the guest: what it sent, what we handed over, what it last heard.
  uint32_t rx_cnt = 0;
  uint32_t fwd_cnt = 0;
  uint32_t last_fwd_cnt_sent = 0;
  std::vector<uint8_t> rx_pending;  // received before on_data was set; ≤ buf_alloc by credit
  std::vector<uint8_t> txq;         // host → guest, not yet sent
  size_t txq_off = 0;
  bool send_request = false;
  bool send_response = false;
  bool send_credit_update = false;
  bool credit_requested = false;  // CREDIT_REQUEST sent, waiting for the guest's update
  bool local_shut_send = false;
  bool shutdown_sent = false;
  bool peer_shut_send = false;
  bool peer_shut_rcv = false;
  bool eof_deferred = false;    // SHUTDOWN(send) arrived while rx_pending held bytes
  bool close_deferred = false;  // SHUTDOWN(both) likewise: close once they are delivered
  bool want_writable = false;
  bool in_ready = false;

  [[nodiscard]] size_t queued() const { return txq.size() - txq_off; }
  [[nodiscard]] uint32_t peer_credit() const {
    // Unsigned wrap-around is the spec's arithmetic (le32 counters).
    const uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
  }
  [[nodiscard]] bool has_work() const {
    if (send_request || send_response || send_credit_update) return true;
    if (state != State::kEstablished) return false;
    if (queued() > 0 && !peer_shut_rcv && (peer_credit() > 0 || !credit_requested)) return true;
    return local_shut_send && !shutdown_sent && queued() == 0;
  }
};

// ---------------------------------------------------------------- the user's handle

class VirtioVsockDevice::Stream final : public VsockStream, public std::enable_shared_from_this<Stream> {
 public:
  Stream(VirtioVsockDevice* dev, std::weak_ptr<bool> alive, Key key, uint64_t id, uint32_t guest_port)
      : dev_(dev), alive_(std::move(alive)), key_(key), id_(id), guest_port_(guest_port) {}
  ~Stream() override {
    if (open_ && !alive_.expired()) dev_->stream_released(key_, id_);
  }

  size_t write(std::span<const uint8_t> data) override {
    if (!usable()) return 0;
    return dev_->stream_write(key_, id_, data);
  }
  void set_on_data(std::function<void(std::span<const uint8_t>)> cb) override {
    on_data_ = std::move(cb);
    if (usable() && on_data_) dev_->stream_set_on_data(key_, id_);
  }
  void set_receive_paused(bool paused) override {
    if (paused_ == paused) return;
    paused_ = paused;
    if (!paused_ && usable() && on_data_) dev_->stream_set_on_data(key_, id_);
  }
  void set_on_writable(std::function<void()> cb) override { on_writable_ = std::move(cb); }
  void set_on_eof(std::function<void()> cb) override { on_eof_ = std::move(cb); }
  void set_on_closed(std::function<void(std::string_view)> cb) override { on_closed_ = std::move(cb); }
  void shutdown_write() override {
    if (usable()) dev_->stream_shutdown_write(key_, id_);
  }
  void close() override {
    if (!usable()) return;
    open_ = false;
    dev_->stream_close(key_, id_);
    // Callbacks for a local close run later, never inside the caller's close().
    std::weak_ptr<Stream> weak = weak_from_this();
    asio::post(dev_->io_, [weak] {
      if (auto self = weak.lock()) self->fire_end("closed by host");
    });
  }
  [[nodiscard]] uint32_t guest_port() const override { return guest_port_; }

  // ---- device side ----
  [[nodiscard]] uint64_t id() const { return id_; }
  [[nodiscard]] bool has_on_data() const { return static_cast<bool>(on_data_) && !paused_; }
  void data(std::span<const uint8_t> d) {
    auto cb = on_data_;  // a copy: the callback may replace itself or drop the stream
    if (cb) cb(d);
  }
  void writable() {
    auto cb = on_writable_;
    if (open_ && cb) cb();
  }
  void eof() {
    if (eof_fired_) return;
    eof_fired_ = true;
    auto cb = on_eof_;
    if (cb) cb();
  }
  // The device ended the stream (reset, peer close, device reset).
  void ended(std::string_view why) {
    open_ = false;
    fire_end(why);
  }

 private:
  [[nodiscard]] bool usable() const { return open_ && !alive_.expired(); }
  void fire_end(std::string_view why) {
    eof();
    if (closed_fired_) return;
    closed_fired_ = true;
    auto cb = on_closed_;
    if (cb) cb(why);
  }

  VirtioVsockDevice* dev_;
  std::weak_ptr<bool> alive_;
  Key key_;
  uint64_t id_;
  uint32_t guest_port_;
  bool open_ = true;
  bool paused_ = false;
  bool eof_fired_ = false;
  bool closed_fired_ = false;
  std::function<void(std::span<const uint8_t>)> on_data_;
  std::function<void()> on_writable_;
  std::function<void()> on_eof_;
  std::function<void(std::string_view)> on_closed_;
};

// ---------------------------------------------------------------- device

VirtioVsockDevice::VirtioVsockDevice(asio::io_context& io, const Clock& clock, VirtioVsockConfig cfg)
    : io_(io), clock_(clock), cfg_(cfg) {}

VirtioVsockDevice::~VirtioVsockDevice() {
  reset();
  *alive_ = false;
}

uint32_t VirtioVsockDevice::device_id() const { return virtio::kDeviceIdVsock; }

uint64_t VirtioVsockDevice::offered_features() const {
  return virtio::kFVersion1 | virtio::kFIndirectDesc | virtio::kFEventIdx;
}

bool VirtioVsockDevice::read_config(uint32_t offset, std::span<uint8_t> out) const {
  // §5.10.4: struct virtio_vsock_config { le64 guest_cid; }
  std::array<uint8_t, 8> cfg{};
  std::memcpy(cfg.data(), &cfg_.guest_cid, 8);
  if (offset > cfg.size() || out.size() > cfg.size() - offset) return false;
  std::memcpy(out.data(), cfg.data() + offset, out.size());
  return true;
}

VirtioVsockStats VirtioVsockDevice::stats() const {
  VirtioVsockStats s = stats_;
  s.connections = conns_.size();
  return s;
}

void VirtioVsockDevice::queue_attached(size_t index, Virtqueue& q) {
  if (index == kRxQueue) {
    rx_ = &q;
    rx_->disable_notifications();
    if (!rsts_.empty() || !ready_.empty()) schedule_rx();
  } else if (index == kTxQueue) {
    tx_ = &q;
  }
  // kEventQueue: nothing is ever sent there (see the header).
}

void VirtioVsockDevice::queue_detached(size_t index) {
  if (index == kRxQueue) rx_ = nullptr;
  if (index == kTxQueue) tx_ = nullptr;
  // Both queues stopped: over vhost-user that is how a driver reset (guest
  // reboot, module reload) or VM shutdown shows; the guest's sockets are
  // gone, so ours go too rather than hang half-open.
  if (index != kEventQueue && rx_ == nullptr && tx_ == nullptr) drop_all("guest stopped the device");
}

void VirtioVsockDevice::queue_notified(size_t index) {
  if (index == kTxQueue) process_tx();
  if (index == kRxQueue) process_rx();
}

void VirtioVsockDevice::reset() {
  rx_ = tx_ = nullptr;
  acked_ = 0;
  drop_all("device reset");
}

void VirtioVsockDevice::drop_all(const char* reason) {
  ready_.clear();
  rsts_.clear();
  auto old = std::move(conns_);
  conns_.clear();
  for (auto& [k, c] : old) {
    if (c->timer) c->timer->cancel();
    if (c->state == Conn::State::kConnecting && c->on_connect) {
      ++stats_.connect_failures;
      auto h = std::move(c->on_connect);
      h(asio::error::connection_reset, nullptr);
    }
    if (c->stream) {
      auto self = c->stream->shared_from_this();
      self->ended(reason);
    }
  }
}

void VirtioVsockDevice::log_guest(std::string_view what) {
  if (log_.allow(clock_.now_ms())) spdlog::warn("virtio-vsock: {} ({} similar suppressed)", what, log_.suppressed());
}

VirtioVsockDevice::Conn* VirtioVsockDevice::find(Key k) {
  auto it = conns_.find(k);
  return it == conns_.end() ? nullptr : it->second.get();
}

void VirtioVsockDevice::mark_ready(Conn& c) {
  if (c.in_ready || !c.has_work()) return;
  c.in_ready = true;
  ready_.push_back(c.key);
  schedule_rx();
}

void VirtioVsockDevice::schedule_rx() {
  if (rx_posted_ || rx_ == nullptr) return;
  rx_posted_ = true;
  std::weak_ptr<bool> alive = alive_;
  asio::post(io_, [this, alive] {
    if (!alive.expired()) process_rx();
  });
}

void VirtioVsockDevice::queue_rst(uint32_t guest_port, uint32_t host_port, bool guest_provoked) {
  if (guest_provoked) {
    const int64_t now = clock_.now_ms();
    if (rst_refill_ms_ < 0) rst_refill_ms_ = now;
    rst_tokens_ =
        std::min<double>(kRstBurst, rst_tokens_ + static_cast<double>(now - rst_refill_ms_) * kRstPerSecond / 1000.0);
    rst_refill_ms_ = now;
    if (rst_tokens_ < 1.0 || rsts_.size() >= kMaxPendingRsts) {
      ++stats_.rst_suppressed;
      return;
    }
    rst_tokens_ -= 1.0;
  } else if (rsts_.size() >= kMaxPendingRsts + cfg_.max_connections) {
    ++stats_.rst_suppressed;
    return;
  }
  rsts_.push_back({guest_port, host_port});
  schedule_rx();
}

void VirtioVsockDevice::close_conn(Key k, const char* reason, bool send_rst, boost::system::error_code connect_error) {
  auto it = conns_.find(k);
  if (it == conns_.end()) return;
  std::unique_ptr<Conn> c = std::move(it->second);
  conns_.erase(it);
  if (send_rst) queue_rst(c->guest_port, c->host_port, false);
  if (c->timer) c->timer->cancel();
  if (c->state == Conn::State::kConnecting && c->on_connect) {
    ++stats_.connect_failures;
    auto h = std::move(c->on_connect);
    h(connect_error ? connect_error : asio::error::connection_reset, nullptr);
  }
  if (c->stream) {
    auto self = c->stream->shared_from_this();
    self->ended(reason);
  }
}

void VirtioVsockDevice::credit_from(Conn& c, const Header& h) {
  c.peer_buf_alloc = h.buf_alloc;
  c.peer_fwd_cnt = h.fwd_cnt;
  if (c.peer_credit() > 0) c.credit_requested = false;
  mark_ready(c);
}

void VirtioVsockDevice::maybe_credit_update(Conn& c) {
  if (c.fwd_cnt - c.last_fwd_cnt_sent >= cfg_.buf_alloc / 4) {
    c.send_credit_update = true;
    mark_ready(c);
  }
}

uint32_t VirtioVsockDevice::allocate_host_port(uint32_t guest_port) {
  // Ephemeral ports from 49152 up, wrapping within [49152, 2^32 - 1];
  // at most |connections| + |listeners| candidates are taken.
  for (;;) {
    const uint32_t p = next_host_port_;
    next_host_port_ = next_host_port_ == 0xffffffffu ? 49152 : next_host_port_ + 1;
    if (listeners_.count(p) == 0 && conns_.count(key_of(guest_port, p)) == 0) return p;
  }
}

// ---------------------------------------------------------------- VsockHost

void VirtioVsockDevice::listen(uint32_t port, VsockAcceptHandler on_accept) { listeners_[port] = std::move(on_accept); }

void VirtioVsockDevice::connect(uint32_t guest_port, VsockConnectHandler on_connect) {
  ++stats_.connects;
  boost::system::error_code early;
  if (!ready())
    early = asio::error::not_connected;
  else if (conns_.size() >= cfg_.max_connections)
    early = asio::error::no_buffer_space;
  if (early) {
    ++stats_.connect_failures;
    asio::post(io_, [h = std::move(on_connect), early] { h(early, nullptr); });
    return;
  }
  const uint32_t host_port = allocate_host_port(guest_port);
  auto c = std::make_unique<Conn>();
  c->key = key_of(guest_port, host_port);
  c->id = ++next_conn_id_;
  c->guest_port = guest_port;
  c->host_port = host_port;
  c->state = Conn::State::kConnecting;
  c->on_connect = std::move(on_connect);
  c->send_request = true;
  c->timer = std::make_unique<asio::steady_timer>(io_, cfg_.connect_timeout);
  const Key k = c->key;
  const uint64_t id = c->id;
  std::weak_ptr<bool> alive = alive_;
  c->timer->async_wait([this, alive, k, id](boost::system::error_code ec) {
    if (ec || alive.expired()) return;
    Conn* conn = find(k);
    if (conn == nullptr || conn->id != id || conn->state != Conn::State::kConnecting) return;
    close_conn(k, "connect timed out", true, asio::error::timed_out);
  });
  Conn& ref = *c;
  conns_.emplace(k, std::move(c));
  mark_ready(ref);
}

// ---------------------------------------------------------------- Stream entry points

VirtioVsockDevice::Conn* VirtioVsockDevice::find(Key k, uint64_t id) {
  Conn* c = find(k);
  return c != nullptr && c->id == id ? c : nullptr;
}

size_t VirtioVsockDevice::stream_write(Key k, uint64_t id, std::span<const uint8_t> data) {
  Conn* c = find(k, id);
  if (c == nullptr || c->state != Conn::State::kEstablished || c->local_shut_send || c->peer_shut_rcv) return 0;
  if (c->txq_off > 0 && c->txq_off == c->txq.size()) {
    c->txq.clear();
    c->txq_off = 0;
  }
  const size_t room = cfg_.tx_queue_bytes > c->queued() ? cfg_.tx_queue_bytes - c->queued() : 0;
  const size_t n = std::min(room, data.size());
  if (n < data.size()) c->want_writable = true;
  if (n == 0) return 0;
  // Compact before growing so the queue's memory stays near its cap.
  if (c->txq_off > 0 && c->txq.size() + n > cfg_.tx_queue_bytes) {
    c->txq.erase(c->txq.begin(), c->txq.begin() + static_cast<std::ptrdiff_t>(c->txq_off));
    c->txq_off = 0;
  }
  c->txq.insert(c->txq.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(n));
  mark_ready(*c);
  return n;
}

void VirtioVsockDevice::stream_shutdown_write(Key k, uint64_t id) {
  Conn* c = find(k, id);
  if (c == nullptr || c->local_shut_send) return;
  c->local_shut_send = true;
  mark_ready(*c);
}

void VirtioVsockDevice::stream_close(Key k, uint64_t id) {
  Conn* c = find(k, id);
  if (c == nullptr) return;
  c->stream = nullptr;  // the Stream fires its own callbacks (posted)
  close_conn(k, "closed by host", true);
}

void VirtioVsockDevice::stream_released(Key k, uint64_t id) {
  Conn* c = find(k, id);
  if (c == nullptr) return;
  c->stream = nullptr;
  close_conn(k, "released", true);
}

void VirtioVsockDevice::stream_set_on_data(Key k, uint64_t id) {
  Conn* c = find(k, id);
  if (c == nullptr || c->rx_pending.empty()) return;
  std::weak_ptr<bool> alive = alive_;
  // Hand over what arrived before the callback existed, on a later turn.
  asio::post(io_, [this, alive, k, id] {
    if (alive.expired()) return;
    Conn* conn = find(k);
    if (conn == nullptr || conn->id != id || conn->stream == nullptr || conn->rx_pending.empty() ||
        !conn->stream->has_on_data())
      return;
    std::vector<uint8_t> data = std::move(conn->rx_pending);
    conn->rx_pending.clear();
    conn->fwd_cnt += static_cast<uint32_t>(data.size());
    auto self = conn->stream->shared_from_this();
    maybe_credit_update(*conn);
    self->data(data);
    // The guest's SHUTDOWN waited for these bytes.
    conn = find(k);
    if (conn == nullptr || conn->id != id || !conn->rx_pending.empty()) return;
    if (conn->eof_deferred) {
      conn->eof_deferred = false;
      self->eof();
    }
    conn = find(k);
    if (conn != nullptr && conn->id == id && conn->close_deferred) close_conn(k, "closed by guest", true);
  });
}

// ---------------------------------------------------------------- transmit queue (guest → host)

void VirtioVsockDevice::process_tx() {
  tx_posted_ = false;
  if (tx_ == nullptr) return;
  int budget = kTxBudget;
  for (;;) {
    tx_->disable_notifications();
    for (; budget > 0; --budget) {
      const auto r = tx_->pop(chain_);
      if (r == Virtqueue::Pop::kEmpty) break;
      if (r == Virtqueue::Pop::kBroken) {
        ++stats_.broken_queue;
        return;
      }
      const uint16_t head = chain_.head;
      handle_tx_chain(chain_);
      if (tx_ == nullptr) return;
      tx_->push_used(head, 0);
    }
    if (budget == 0) {
      tx_->notify();
      if (!tx_posted_) {
        tx_posted_ = true;
        std::weak_ptr<bool> alive = alive_;
        asio::post(io_, [this, alive] {
          if (!alive.expired()) process_tx();
        });
      }
      break;
    }
    if (!tx_->enable_notifications()) break;
  }
  if (tx_ != nullptr) tx_->notify();
  // Replies (RESPONSE, RST, credit) go out now rather than a turn later.
  if (!rsts_.empty() || !ready_.empty()) process_rx();
}

void VirtioVsockDevice::handle_tx_chain(const DescriptorChain& c) {
  if (!c.ok() || !c.writable.empty()) {
    ++stats_.malformed;
    log_guest(c.ok() ? "tx chain with writable buffers" : to_string(c.error));
    return;
  }
  std::array<uint8_t, vsock::kHdrSize> hb{};
  if (c.readable_bytes < vsock::kHdrSize) {
    ++stats_.malformed;
    ++stats_.bad_packets[static_cast<size_t>(vsock::PacketCheck::kShort)];
    log_guest("short vsock packet");
    return;
  }
  size_t got = 0;
  for (const auto& b : c.readable) {
    const size_t n = std::min(b.size(), hb.size() - got);
    // SAFETY: b lies inside guest RAM (GuestMemory::slice); n fits hb.
    std::memcpy(hb.data() + got, b.data(), n);
    got += n;
    if (got == hb.size()) break;
  }
  const Header h = vsock::parse_header(hb);
  const auto check = vsock::check_guest_packet(h, c.readable_bytes, cfg_.guest_cid);
  if (check != vsock::PacketCheck::kOk) {
    ++stats_.malformed;
    ++stats_.bad_packets[static_cast<size_t>(check)];
    log_guest(to_string(check));
    // A connection request of the wrong type still deserves an answer.
    if (check == vsock::PacketCheck::kBadType && h.op == static_cast<uint16_t>(Op::kRequest) &&
        h.src_cid == cfg_.guest_cid)
      queue_rst(h.src_port, h.dst_port, true);
    return;
  }
  ++stats_.tx_packets;
  on_packet(h, c);
}

void VirtioVsockDevice::on_packet(const Header& h, const DescriptorChain& chain) {
  const Key k = key_of(h.src_port, h.dst_port);
  const auto op = static_cast<Op>(h.op);
  Conn* c = find(k);
  if (c == nullptr) {
    if (op == Op::kRequest) {
      auto l = listeners_.find(h.dst_port);
      if (l == listeners_.end()) {
        ++stats_.refused;
        queue_rst(h.src_port, h.dst_port, true);
        return;
      }
      if (conns_.size() >= cfg_.max_connections) {
        ++stats_.table_full;
        log_guest("connection table full; refusing a connection");
        queue_rst(h.src_port, h.dst_port, true);
        return;
      }
      auto conn = std::make_unique<Conn>();
      conn->key = k;
      conn->id = ++next_conn_id_;
      conn->guest_port = h.src_port;
      conn->host_port = h.dst_port;
      conn->send_response = true;
      auto stream = std::make_shared<Stream>(this, alive_, k, conn->id, h.src_port);
      conn->stream = stream.get();
      Conn& ref = *conn;
      conns_.emplace(k, std::move(conn));
      credit_from(ref, h);
      ++stats_.accepted;
      auto handler = l->second;  // a copy: the handler may call listen() again
      handler(std::move(stream));
      return;
    }
    // §5.10.6.4: never answer a RST with a RST.
    if (op == Op::kRst) return;
    ++stats_.unknown_connection;
    queue_rst(h.src_port, h.dst_port, true);
    return;
  }

  credit_from(*c, h);
  switch (op) {
    case Op::kRequest:
      log_guest("connection request for a connection that exists");
      close_conn(k, "duplicate connection request", true);
      return;
    case Op::kResponse: {
      if (c->state != Conn::State::kConnecting) {
        close_conn(k, "unexpected response", true);
        return;
      }
      c->state = Conn::State::kEstablished;
      if (c->timer) c->timer->cancel();
      auto stream = std::make_shared<Stream>(this, alive_, k, c->id, c->guest_port);
      c->stream = stream.get();
      auto handler = std::move(c->on_connect);
      mark_ready(*c);
      if (handler) handler({}, std::move(stream));
      return;
    }
    case Op::kRst:
      ++stats_.rst_received;
      close_conn(k, "reset by guest", false, asio::error::connection_refused);
      return;
    case Op::kShutdown: {
      if (c->state != Conn::State::kEstablished) {
        close_conn(k, "shutdown before connected", true);
        return;
      }
      if (h.flags & vsock::kShutdownRcv) {
        c->peer_shut_rcv = true;
        c->txq.clear();
        c->txq_off = 0;
      }
      // Bytes still waiting for a paused (or not yet reading) consumer come
      // first: the end of the stream is reported after them.
      const bool held = c->stream != nullptr && !c->rx_pending.empty();
      if ((h.flags & vsock::kShutdownSend) && !c->peer_shut_send) {
        c->peer_shut_send = true;
        if (held)
          c->eof_deferred = true;
        else if (c->stream)
          c->stream->shared_from_this()->eof();
      }
      c = find(k);
      // Linux closes a stream by shutting down both directions and waiting
      // for the peer's RST (virtio_transport_close); give it one.
      if (c != nullptr && c->peer_shut_send && c->peer_shut_rcv) {
        if (held)
          c->close_deferred = true;
        else
          close_conn(k, "closed by guest", true);
      }
      return;
    }
    case Op::kRw: {
      if (c->state != Conn::State::kEstablished || c->peer_shut_send) {
        close_conn(k, "data on a stream that cannot take it", true);
        return;
      }
      // §5.10.6.3: the guest may not exceed the buffer we advertised.
      const uint32_t unconsumed = c->rx_cnt - c->fwd_cnt;
      if (static_cast<uint64_t>(unconsumed) + h.len > cfg_.buf_alloc) {
        ++stats_.credit_violations;
        log_guest("guest exceeded its vsock credit");
        close_conn(k, "credit exceeded", true);
        return;
      }
      c->rx_cnt += h.len;
      stats_.tx_bytes += h.len;
      if (h.len > 0) deliver(*c, chain, h.len);
      return;
    }
    case Op::kCreditUpdate: return;  // credit_from() did the work
    case Op::kCreditRequest:
      c->send_credit_update = true;
      mark_ready(*c);
      return;
    case Op::kInvalid: return;
  }
}

void VirtioVsockDevice::deliver(Conn& c, const DescriptorChain& chain, uint32_t len) {
  // The payload follows the header in the readable buffers; it is usually
  // one whole descriptor (Linux puts the header in its own), handed over in
  // place; otherwise gathered.
  std::span<const uint8_t> payload;
  size_t skip = vsock::kHdrSize;
  size_t first = 0;
  while (first < chain.readable.size() && skip >= chain.readable[first].size()) {
    skip -= chain.readable[first].size();
    ++first;
  }
  if (first < chain.readable.size() && chain.readable[first].size() - skip >= len) {
    payload = chain.readable[first].subspan(skip, len);
  } else {
    scratch_.resize(len);
    size_t off = 0;
    for (size_t i = first; i < chain.readable.size() && off < len; ++i) {
      const auto b = chain.readable[i].subspan(i == first ? skip : 0);
      const size_t n = std::min(b.size(), len - off);
      // SAFETY: b lies inside guest RAM (GuestMemory::slice); n fits scratch_.
      std::memcpy(scratch_.data() + off, b.data(), n);
      off += n;
    }
    payload = scratch_;
  }
  if (c.stream == nullptr || !c.stream->has_on_data() || !c.rx_pending.empty()) {
    // Nobody reads yet (or paused), or older bytes still wait for their posted
    // delivery (order): keep it, bounded by the credit check in on_packet.
    c.rx_pending.insert(c.rx_pending.end(), payload.begin(), payload.end());
    return;
  }
  c.fwd_cnt += len;
  maybe_credit_update(c);
  auto self = c.stream->shared_from_this();
  self->data(payload);  // may close the stream; `c` is not touched afterwards
}

// ---------------------------------------------------------------- receive queue (host → guest)

bool VirtioVsockDevice::next_packet(Header& h, Conn*& data_conn, uint32_t max_payload) {
  h = Header{};
  h.src_cid = vsock::kHostCid;
  h.dst_cid = cfg_.guest_cid;
  h.type = vsock::kTypeStream;
  h.buf_alloc = cfg_.buf_alloc;
  data_conn = nullptr;
  if (!rsts_.empty()) {
    const PendingRst r = rsts_.front();
    rsts_.pop_front();
    h.src_port = r.host_port;
    h.dst_port = r.guest_port;
    h.op = static_cast<uint16_t>(Op::kRst);
    ++stats_.rst_sent;
    return true;
  }
  while (!ready_.empty()) {
    const Key k = ready_.front();
    ready_.pop_front();
    Conn* c = find(k);
    if (c == nullptr) continue;
    c->in_ready = false;
    h.src_port = c->host_port;
    h.dst_port = c->guest_port;
    h.fwd_cnt = c->fwd_cnt;
    if (c->send_request) {
      c->send_request = false;
      h.op = static_cast<uint16_t>(Op::kRequest);
    } else if (c->send_response) {
      c->send_response = false;
      h.op = static_cast<uint16_t>(Op::kResponse);
    } else if (c->state == Conn::State::kEstablished && c->queued() > 0 && !c->peer_shut_rcv && c->peer_credit() > 0) {
      h.op = static_cast<uint16_t>(Op::kRw);
      h.len = static_cast<uint32_t>(std::min<size_t>({c->queued(), c->peer_credit(), max_payload}));
      data_conn = c;
    } else if (c->state == Conn::State::kEstablished && c->queued() > 0 && !c->peer_shut_rcv && !c->credit_requested) {
      c->credit_requested = true;
      h.op = static_cast<uint16_t>(Op::kCreditRequest);
    } else if (c->local_shut_send && !c->shutdown_sent && c->queued() == 0) {
      c->shutdown_sent = true;
      h.op = static_cast<uint16_t>(Op::kShutdown);
      h.flags = vsock::kShutdownSend;
    } else if (c->send_credit_update) {
      h.op = static_cast<uint16_t>(Op::kCreditUpdate);
      ++stats_.credit_updates_sent;
    } else {
      continue;  // nothing after all (e.g. waiting for credit)
    }
    // Every packet carries our credit: no separate update needed now.
    c->send_credit_update = false;
    c->last_fwd_cnt_sent = c->fwd_cnt;
    if (c->has_work()) {
      c->in_ready = true;
      ready_.push_back(k);
    }
    return true;
  }
  return false;
}

void VirtioVsockDevice::process_rx() {
  rx_posted_ = false;
  if (rx_ == nullptr) return;
  bool used = false;
  std::vector<Key> writable;
  while (!rsts_.empty() || !ready_.empty()) {
    const auto r = rx_->pop(chain_);
    if (r == Virtqueue::Pop::kBroken) {
      ++stats_.broken_queue;
      break;
    }
    if (r == Virtqueue::Pop::kEmpty) {
      ++stats_.rx_stalls;
      // Wait for the guest to post buffers; look once more for a race.
      if (rx_->request_notification_on_new_buffers()) continue;
      break;
    }
    if (!chain_.ok() || !chain_.readable.empty() || chain_.writable_bytes < vsock::kHdrSize) {
      ++stats_.malformed;
      log_guest("bad vsock receive buffer");
      rx_->push_used(chain_.head, 0);
      used = true;
      continue;
    }
    const uint32_t max_payload =
        static_cast<uint32_t>(std::min<uint64_t>(chain_.writable_bytes - vsock::kHdrSize, vsock::kMaxPayload));
    Header h;
    Conn* dc = nullptr;
    if (!next_packet(h, dc, max_payload)) {
      rx_->undo_pop(1);
      break;
    }
    std::array<uint8_t, vsock::kHdrSize> hb{};
    vsock::write_header(hb, h);
    const std::span<const uint8_t> payload =
        dc ? std::span<const uint8_t>(dc->txq.data() + dc->txq_off, h.len) : std::span<const uint8_t>();
    const std::span<const uint8_t> pieces[2] = {hb, payload};
    size_t piece = 0, off = 0;
    for (auto& b : chain_.writable) {
      size_t boff = 0;
      while (boff < b.size() && piece < 2) {
        const size_t n = std::min(b.size() - boff, pieces[piece].size() - off);
        // SAFETY: b is a device-writable span inside guest RAM; n fits both.
        if (n > 0) std::memcpy(b.data() + boff, pieces[piece].data() + off, n);
        boff += n;
        off += n;
        if (off == pieces[piece].size()) {
          ++piece;
          off = 0;
        }
      }
      if (piece == 2) break;
    }
    rx_->push_used(chain_.head, static_cast<uint32_t>(vsock::kHdrSize + h.len));
    used = true;
    ++stats_.rx_packets;
    if (dc != nullptr) {
      dc->txq_off += h.len;
      dc->tx_cnt += h.len;
      stats_.rx_bytes += h.len;
      if (dc->want_writable && dc->queued() <= cfg_.tx_queue_bytes / 2) {
        dc->want_writable = false;
        writable.push_back(dc->key);
      }
      if (!dc->in_ready) mark_ready(*dc);  // e.g. a SHUTDOWN waiting for the queue to drain
    }
  }
  if (rsts_.empty() && ready_.empty()) rx_->disable_notifications();
  if (used) rx_->notify();
  for (Key k : writable) {
    Conn* c = find(k);
    if (c == nullptr || c->stream == nullptr) continue;
    auto self = c->stream->shared_from_this();
    self->writable();
  }
}

}  // namespace causeway::vmm
