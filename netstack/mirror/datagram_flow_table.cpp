// A mirrored link's UDP and echo flows; see datagram_flow_table.hpp.
#include "netstack/mirror/datagram_flow_table.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

#include "base/byte_order.hpp"
#include "base/checksum.hpp"
#include "netstack/mirror/sockaddr.hpp"
#include "netstack/packet.hpp"

namespace causeway::netstack::mirror {
namespace asio = boost::asio;

namespace {

using wire::store_be16;

constexpr auto kSweepEvery = std::chrono::seconds(5);
constexpr auto kPingIdle = std::chrono::seconds(30);
constexpr size_t kReadBatch = 64;  // datagrams read per readable event (fairness between flows)
constexpr size_t kMaxDatagram = 65535;

std::vector<uint8_t> flow_key(int family, const uint8_t* addr, uint16_t port) {
  std::vector<uint8_t> k(1 + 16 + 2, 0);
  k[0] = static_cast<uint8_t>(family);
  std::memcpy(k.data() + 1, addr, family == AF_INET ? 4 : 16);
  store_be16(k.data() + 17, port);
  return k;
}

int64_t to_ns(std::chrono::seconds s) { return std::chrono::duration_cast<std::chrono::nanoseconds>(s).count(); }

}  // namespace

struct DatagramFlowTable::Flow {
  explicit Flow(asio::io_context& io) : desc(io) {}
  bool ping = false;
  int family = AF_INET;
  std::array<uint8_t, 16> gaddr{};
  uint16_t gport = 0;  // UDP: the guest's port; ping: the guest's echo id
  Mac guest_mac{};
  std::vector<uint8_t> key;
  asio::posix::stream_descriptor desc;
  int64_t last_ns = 0;  // Clock::now_ns() of the last datagram either way
  std::chrono::seconds idle{180};
  bool dead = false;
};

DatagramFlowTable::DatagramFlowTable(asio::io_context& io, const Clock& clock, DatagramFlowConfig cfg, SendToGuest send)
    : io_(io), clock_(clock), cfg_(std::move(cfg)), send_(std::move(send)), sweep_timer_(io) {
  rx_.resize(kMaxDatagram);
  sweep();
}

DatagramFlowTable::~DatagramFlowTable() {
  *alive_ = false;
  sweep_timer_.cancel();
  close_all();
}

void DatagramFlowTable::close_all() {
  for (auto* table : {&udp_, &ping_}) {
    for (auto& [k, f] : *table) {
      f->dead = true;
      f->desc.close();
    }
    table->clear();
  }
}

bool DatagramFlowTable::make_room(Table& table, size_t cap) {
  if (cap == 0) return false;
  if (table.size() < cap) return true;
  auto oldest = std::min_element(table.begin(), table.end(),
                                 [](const auto& a, const auto& b) { return a.second->last_ns < b.second->last_ns; });
  oldest->second->dead = true;
  oldest->second->desc.close();
  table.erase(oldest);
  ++stats_.udp_evicted;
  return true;
}

void DatagramFlowTable::on_udp(int family, const Mac& src_mac, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                               uint16_t dport, std::span<const uint8_t> payload) {
  auto key = flow_key(family, src, sport);
  auto it = udp_.find(key);
  if (it == udp_.end()) {
    if (!make_room(udp_, cfg_.max_udp_flows)) return;
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ++stats_.udp_errors;
      return;
    }
    sockaddr_storage local{};
    // The guest's own port when the host does not use it (protocols that expect the source port
    // they sent from keep working), else an ephemeral one.
    socklen_t len = make_sockaddr(family, src, sport, cfg_.host_ifindex, local);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len) != 0) {
      len = make_sockaddr(family, src, 0, cfg_.host_ifindex, local);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len) != 0) {
        ::close(fd);  // the address is no longer the host's: a sync is on its way
        ++stats_.udp_errors;
        return;
      }
    }
    auto f = std::make_shared<Flow>(io_);
    f->family = family;
    std::memcpy(f->gaddr.data(), src, family == AF_INET ? 4 : 16);
    f->gport = sport;
    f->key = key;
    f->desc.assign(fd);
    f->idle = dport == 53 ? cfg_.dns_idle : cfg_.udp_idle;
    it = udp_.emplace(std::move(key), f).first;
    ++stats_.udp_flows_opened;
    read_flow(f);
  }
  auto& f = *it->second;
  f.guest_mac = src_mac;
  f.last_ns = clock_.now_ns();
  sockaddr_storage to{};
  const socklen_t tlen = make_sockaddr(family, dst, dport, cfg_.host_ifindex, to);
  if (::sendto(f.desc.native_handle(), payload.data(), payload.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to),
               tlen) < 0) {
    ++stats_.udp_errors;  // EAGAIN (a full socket) is loss, as on a wire; the rest is the host's refusal
    return;
  }
  ++stats_.udp_out;
}

void DatagramFlowTable::on_echo(int family, const Mac& src_mac, const uint8_t* src, const uint8_t* dst,
                                std::span<const uint8_t> icmp) {
  const uint16_t id = wire::load_be16(icmp.data() + 4);
  auto key = flow_key(family, src, id);
  auto it = ping_.find(key);
  if (it == ping_.end()) {
    if (!make_room(ping_, cfg_.max_ping_flows)) return;
    const int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            family == AF_INET ? int{IPPROTO_ICMP} : int{IPPROTO_ICMPV6});
    if (fd < 0) {
      // EACCES: this group is outside net.ipv4.ping_group_range (which also governs IPv6).
      if (stats_.ping_errors++ == 0)
        spdlog::warn("mirrored link {}: no ping socket ({}); is net.ipv4.ping_group_range set?", cfg_.name,
                     std::strerror(errno));
      return;
    }
    sockaddr_storage local{};
    const socklen_t len = make_sockaddr(family, src, 0, cfg_.host_ifindex, local);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), len) != 0) {
      ::close(fd);
      ++stats_.ping_errors;
      return;
    }
    auto f = std::make_shared<Flow>(io_);
    f->ping = true;
    f->family = family;
    std::memcpy(f->gaddr.data(), src, family == AF_INET ? 4 : 16);
    f->gport = id;
    f->key = key;
    f->desc.assign(fd);
    f->idle = kPingIdle;
    it = ping_.emplace(std::move(key), f).first;
    read_flow(f);
  }
  auto& f = *it->second;
  f.guest_mac = src_mac;
  f.last_ns = clock_.now_ns();
  sockaddr_storage to{};
  const socklen_t tlen = make_sockaddr(family, dst, 0, cfg_.host_ifindex, to);
  // The kernel sets the identifier (the socket's) and the checksum.
  if (::sendto(f.desc.native_handle(), icmp.data(), icmp.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to), tlen) <
      0) {
    ++stats_.ping_errors;
    return;
  }
  ++stats_.ping_out;
}

void DatagramFlowTable::read_flow(const std::shared_ptr<Flow>& f) {
  f->desc.async_wait(asio::posix::descriptor_base::wait_read,
                     [this, f, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
                       if (alive.expired() || f->dead || ec) return;
                       for (size_t i = 0; i < kReadBatch; ++i) {
                         sockaddr_storage peer{};
                         socklen_t plen = sizeof peer;
                         const ssize_t n = ::recvfrom(f->desc.native_handle(), rx_.data(), rx_.size(), MSG_DONTWAIT,
                                                      reinterpret_cast<sockaddr*>(&peer), &plen);
                         if (n < 0) break;  // EAGAIN, or an ICMP error queued on the socket: nothing to deliver
                         deliver(*f, peer, {rx_.data(), static_cast<size_t>(n)});
                         if (f->dead) return;
                       }
                       read_flow(f);
                     });
}

void DatagramFlowTable::deliver(Flow& f, const sockaddr_storage& peer, std::span<const uint8_t> data) {
  f.last_ns = clock_.now_ns();
  const bool v4 = f.family == AF_INET;
  const uint8_t* paddr = v4 ? reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in&>(peer).sin_addr)
                            : reinterpret_cast<const sockaddr_in6&>(peer).sin6_addr.s6_addr;
  const uint16_t pport = ntohs(v4 ? reinterpret_cast<const sockaddr_in&>(peer).sin_port
                                  : reinterpret_cast<const sockaddr_in6&>(peer).sin6_port);
  const size_t iplen = v4 ? 20 : 40;
  if (!f.ping) {
    if (iplen + 8 + data.size() > cfg_.mtu) {
      ++stats_.too_big;
      return;
    }
    std::vector<uint8_t> frame;
    if (v4) {
      in_addr s{}, d{};
      std::memcpy(&s, paddr, 4);
      std::memcpy(&d, f.gaddr.data(), 4);
      frame = build_udp4(cfg_.our_mac, f.guest_mac, s, pport, d, f.gport, data);
    } else {
      in6_addr s{}, d{};
      std::memcpy(&s, paddr, 16);
      std::memcpy(&d, f.gaddr.data(), 16);
      frame = build_udp6(cfg_.our_mac, f.guest_mac, s, pport, d, f.gport, data);
    }
    ++stats_.udp_in;
    send_(frame);
    return;
  }
  // A ping socket hands us the ICMP message without the IP header.
  if (data.size() < 8 || data[0] != (v4 ? 0 : 129) || iplen + data.size() > cfg_.mtu) {
    ++stats_.too_big;
    return;
  }
  out_.assign(kEthHeaderLen + iplen + data.size(), 0);
  uint8_t* p = out_.data();
  std::copy(f.guest_mac.begin(), f.guest_mac.end(), p);
  std::copy(cfg_.our_mac.begin(), cfg_.our_mac.end(), p + 6);
  store_be16(p + 12, v4 ? kEtherTypeIpv4 : kEtherTypeIpv6);
  uint8_t* ip = p + kEthHeaderLen;
  uint8_t* icmp = ip + iplen;
  std::memcpy(icmp, data.data(), data.size());
  store_be16(icmp + 4, f.gport);  // the guest's identifier back
  store_be16(icmp + 2, 0);
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<uint16_t>(20 + data.size()));
    ip[8] = 64;
    ip[9] = 1;
    std::memcpy(ip + 12, paddr, 4);
    std::memcpy(ip + 16, f.gaddr.data(), 4);
    store_be16(ip + 10, static_cast<uint16_t>(~wire::checksum_fold(wire::checksum_add({ip, 20}))));
    store_be16(icmp + 2, static_cast<uint16_t>(~wire::checksum_fold(wire::checksum_add({icmp, data.size()}))));
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<uint16_t>(data.size()));
    ip[6] = 58;
    ip[7] = 64;
    std::memcpy(ip + 8, paddr, 16);
    std::memcpy(ip + 24, f.gaddr.data(), 16);
    uint8_t pseudo[40] = {};
    std::memcpy(pseudo, ip + 8, 32);
    store_be16(pseudo + 34, static_cast<uint16_t>(data.size()));
    pseudo[39] = 58;
    const uint32_t sum = wire::checksum_add({icmp, data.size()}, wire::checksum_add({pseudo, 40}));
    store_be16(icmp + 2, static_cast<uint16_t>(~wire::checksum_fold(sum)));
  }
  ++stats_.ping_in;
  send_(out_);
}

void DatagramFlowTable::sweep() {
  const int64_t now_ns = clock_.now_ns();
  for (Table* table : {&udp_, &ping_}) {
    for (auto it = table->begin(); it != table->end();) {
      if (now_ns - it->second->last_ns > to_ns(it->second->idle)) {
        it->second->dead = true;
        it->second->desc.close();
        it = table->erase(it);
      } else {
        ++it;
      }
    }
  }
  sweep_timer_.expires_after(kSweepEvery);
  sweep_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (!ec && !alive.expired()) sweep();
  });
}

}  // namespace causeway::netstack::mirror
