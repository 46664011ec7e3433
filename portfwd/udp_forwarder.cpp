#include "portfwd/udp_forwarder.hpp"

#include <netinet/in.h>

#include <boost/asio/buffer.hpp>

namespace causeway::portfwd {
namespace asio = boost::asio;

namespace {
socklen_t sockaddr_len(const sockaddr_storage& ss) {
  return ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}
std::string key_of(const asio::generic::datagram_protocol::endpoint& ep) {
  return std::string(reinterpret_cast<const char*>(ep.data()), ep.size());
}
}  // namespace

UdpForwarder::UdpForwarder(asio::io_context& io, const Clock& clock, const sockaddr_storage& listen_on,
                           uint16_t guest_port, GuestDatagramChannel& channel, std::chrono::milliseconds sweep_interval)
    : clock_(clock),
      listen_on_(listen_on),
      guest_port_(guest_port),
      channel_(channel),
      listener_(io),
      sweep_timer_(io),
      sweep_interval_(sweep_interval) {}

UdpForwarder::~UdpForwarder() {
  *alive_ = false;
  boost::system::error_code ec;
  listener_.close(ec);
  sweep_timer_.cancel();
  for (auto& [k, f] : flows_) channel_.close_flow(f->handle);
}

boost::system::error_code UdpForwarder::start() {
  const Endpoint ep(&listen_on_, sockaddr_len(listen_on_), IPPROTO_UDP);
  boost::system::error_code ec;
  listener_.open(ep.protocol(), ec);
  if (ec) return ec;
  if (listen_on_.ss_family == AF_INET6) {
    const int one = 1;  // the IPv4 side, if any, is a forward of its own
    ::setsockopt(listener_.native_handle(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  listener_.bind(ep, ec);
  if (!ec) listener_.non_blocking(true, ec);  // replies to a client that does not read are dropped
  if (ec) {
    boost::system::error_code ignored;
    listener_.close(ignored);
    return ec;
  }
  receive_from_clients();
  sweep();
  return {};
}

UdpForwarder::Flow* UdpForwarder::flow_for(const Endpoint& client) {
  const std::string key = key_of(client);
  if (auto it = flows_.find(key); it != flows_.end()) return it->second.get();
  if (flows_.size() >= kMaxFlows) return nullptr;
  auto handle = channel_.open_flow(
      guest_port_, [this, client, alive = std::weak_ptr<bool>(alive_), key](std::span<const uint8_t> payload) {
        auto a = alive.lock();
        if (!a || !*a) return;
        auto it = flows_.find(key);
        if (it == flows_.end()) return;
        it->second->last_ms = clock_.now_ms();
        boost::system::error_code ec;
        listener_.send_to(asio::buffer(payload.data(), payload.size()), client, 0, ec);
        if (!ec) ++stats_.datagrams_from_guest;
      });
  if (!handle) return nullptr;
  auto flow = std::make_unique<Flow>();
  flow->handle = *handle;
  flow->client = client;
  Flow* raw = flow.get();
  flows_.emplace(key, std::move(flow));
  ++stats_.flows_created;
  stats_.flows_active = flows_.size();
  return raw;
}

void UdpForwarder::receive_from_clients() {
  listener_.async_receive_from(asio::buffer(buf_), sender_,
                               [this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec, size_t n) {
                                 auto a = alive.lock();
                                 if (!a || !*a || ec == asio::error::operation_aborted) return;
                                 if (!ec) {
                                   if (Flow* f = flow_for(sender_)) {
                                     f->last_ms = clock_.now_ms();
                                     if (channel_.send_on_flow(f->handle, {buf_.data(), n}))
                                       ++stats_.datagrams_to_guest;
                                     else
                                       ++stats_.dropped_undeliverable;
                                   } else {
                                     ++stats_.dropped_over_capacity;
                                   }
                                 }
                                 receive_from_clients();
                               });
}

void UdpForwarder::sweep() {
  sweep_timer_.expires_after(sweep_interval_);
  sweep_timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    auto a = alive.lock();
    if (!a || !*a || ec) return;
    const int64_t now = clock_.now_ms();
    const int64_t idle_ms = std::chrono::duration_cast<std::chrono::milliseconds>(kIdleTimeout).count();
    for (auto it = flows_.begin(); it != flows_.end();) {
      if (now - it->second->last_ms > idle_ms) {
        channel_.close_flow(it->second->handle);
        it = flows_.erase(it);
        ++stats_.flows_expired;
      } else {
        ++it;
      }
    }
    stats_.flows_active = flows_.size();
    sweep();
  });
}

}  // namespace causeway::portfwd
