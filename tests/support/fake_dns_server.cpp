#include "tests/support/fake_dns_server.hpp"

#include <arpa/inet.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace causeway::dns::testing {
namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

struct FakeDnsServer::Conn {
  explicit Conn(asio::io_context& io) : sock(io) {}
  tcp::socket sock;
  uint8_t len[2] = {0, 0};
  Bytes body;
};

FakeDnsServer::FakeDnsServer(asio::io_context& io, const asio::ip::address& address, uint16_t port)
    : io_(io), udp_(io), tcp_(io) {
  // With port 0 the UDP port is free, but the same TCP port may not be
  // (another test binary on the machine): try a few ports.
  for (int attempt = 0; attempt < (port == 0 ? 50 : 1) && !ok_; ++attempt) {
    boost::system::error_code ec;
    udp_.close(ec);
    tcp_.close(ec);
    udp_.open(address.is_v6() ? udp::v6() : udp::v4(), ec);
    if (!ec) udp_.bind(udp::endpoint(address, port), ec);
    if (ec) continue;
    port_ = udp_.local_endpoint().port();
    tcp_.open(address.is_v6() ? tcp::v6() : tcp::v4(), ec);
    if (!ec) tcp_.bind(tcp::endpoint(address, port_), ec);
    if (!ec) tcp_.listen(64, ec);
    ok_ = !ec;
  }
  if (!ok_) return;
  receive_udp();
  accept_tcp();
}

FakeDnsServer::~FakeDnsServer() {
  *alive_ = false;
  boost::system::error_code ec;
  udp_.close(ec);
  tcp_.close(ec);
  for (auto& w : conns_)
    if (auto c = w.lock()) c->sock.close(ec);
}

DnsServer FakeDnsServer::server() const {
  DnsServer s;
  boost::system::error_code ec;
  s.address = udp_.local_endpoint(ec).address();
  s.port = port_;
  return s;
}

void FakeDnsServer::add(std::string name, Rr rr) { table_[std::move(name)].push_back(std::move(rr)); }

Bytes FakeDnsServer::a(const char* dotted) {
  in_addr v{};
  inet_pton(AF_INET, dotted, &v);
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  return Bytes(p, p + 4);
}

Bytes FakeDnsServer::aaaa(const char* text) {
  in6_addr v{};
  inet_pton(AF_INET6, text, &v);
  return Bytes(v.s6_addr, v.s6_addr + 16);
}

Bytes FakeDnsServer::mx(uint16_t preference, std::string_view exchange) {
  Bytes b;
  put16(b, preference);
  put_name(b, exchange);
  return b;
}

Bytes FakeDnsServer::txt(const std::vector<std::string>& strings) {
  Bytes b;
  for (const auto& s : strings) {
    b.push_back(static_cast<uint8_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
  return b;
}

Bytes FakeDnsServer::answer(const Bytes& q, bool udp) {
  if (mode_ == Mode::kSilent || q.size() < 12 || get16(q, 4) != 1) return {};
  // The question: uncompressed labels (what clients send).
  std::string name;
  size_t p = 12;
  while (p < q.size() && q[p] != 0) {
    const size_t len = q[p];
    if (len > 63 || p + 1 + len > q.size()) return {};
    if (!name.empty()) name.push_back('.');
    for (size_t i = 0; i < len; ++i) name.push_back(static_cast<char>(std::tolower(q[p + 1 + i])));
    p += 1 + len;
  }
  if (p + 5 > q.size()) return {};
  const size_t qend = p + 5;
  const uint16_t qtype = get16(q, p + 1);
  // An OPT record, if the query has one right after the question.
  std::optional<uint16_t> edns;
  if (get16(q, 10) >= 1 && qend + 11 <= q.size() && q[qend] == 0 && get16(q, qend + 1) == 41) edns = get16(q, qend + 3);

  Bytes out;
  put16(out, get16(q, 0));
  uint16_t rcode = 0;
  std::vector<const Rr*> rrs;
  if (mode_ == Mode::kServFail) {
    rcode = 2;
  } else if (auto it = table_.find(name); it == table_.end()) {
    rcode = 3;
  } else {
    for (const Rr& rr : it->second)
      if (rr.type == qtype) rrs.push_back(&rr);
  }
  put16(out, static_cast<uint16_t>(0x8480 | (q[2] & 0x01) << 8 | rcode));
  put16(out, 1);
  put16(out, static_cast<uint16_t>(rrs.size()));
  put16(out, 0);
  put16(out, edns ? 1 : 0);
  out.insert(out.end(), q.begin() + 12, q.begin() + static_cast<ptrdiff_t>(qend));
  for (const Rr* rr : rrs) {
    put16(out, 0xc00c);
    put16(out, rr->type);
    put16(out, 1);
    put32(out, rr->ttl);
    put16(out, static_cast<uint16_t>(rr->rdata.size()));
    out.insert(out.end(), rr->rdata.begin(), rr->rdata.end());
  }
  if (edns) {
    out.push_back(0);
    put16(out, 41);
    put16(out, 1232);
    put32(out, 0);
    put16(out, 0);
  }
  const size_t limit = edns ? std::max<size_t>(*edns, 512) : 512;
  if (udp && (truncate_udp_ || out.size() > limit)) {
    // RFC 1035 §4.2.1: header and question only, TC set.
    out.resize(qend);
    out[2] |= 0x02;
    out[6] = out[7] = 0;
    out[10] = out[11] = 0;
  }
  return out;
}

void FakeDnsServer::receive_udp() {
  udp_.async_receive_from(asio::buffer(buf_), peer_,
                          [this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec, size_t n) {
                            if (alive.expired() || !*alive.lock()) return;
                            if (ec == asio::error::operation_aborted) return;
                            if (!ec) {
                              ++udp_queries;
                              Bytes q(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(n));
                              received.push_back(q);
                              Bytes a = answer(q, true);
                              if (!a.empty()) {
                                boost::system::error_code wec;
                                udp_.send_to(asio::buffer(a), peer_, 0, wec);
                                sent.push_back(std::move(a));
                              }
                            }
                            receive_udp();
                          });
}

void FakeDnsServer::accept_tcp() {
  auto c = std::make_shared<Conn>(io_);
  tcp_.async_accept(c->sock, [this, c, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
    if (alive.expired() || !*alive.lock() || ec == asio::error::operation_aborted) return;
    if (!ec) {
      conns_.push_back(c);
      read_tcp(c);
    }
    accept_tcp();
  });
}

void FakeDnsServer::read_tcp(const std::shared_ptr<Conn>& c) {
  asio::async_read(c->sock, asio::buffer(c->len),
                   [this, c, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec, size_t) {
                     if (alive.expired() || !*alive.lock() || ec) return;
                     c->body.resize((size_t{c->len[0]} << 8) | c->len[1]);
                     asio::async_read(c->sock, asio::buffer(c->body),
                                      [this, c, alive](const boost::system::error_code& ec2, size_t) {
                                        if (alive.expired() || !*alive.lock() || ec2) return;
                                        ++tcp_queries;
                                        received.push_back(c->body);
                                        Bytes a = answer(c->body, false);
                                        if (!a.empty()) {
                                          Bytes framed;
                                          put16(framed, static_cast<uint16_t>(a.size()));
                                          framed.insert(framed.end(), a.begin(), a.end());
                                          boost::system::error_code wec;
                                          asio::write(c->sock, asio::buffer(framed), wec);  // small; loopback
                                          sent.push_back(std::move(a));
                                        }
                                        read_tcp(c);
                                      });
                   });
}

uint16_t unused_port() {
  asio::io_context io;
  udp::socket s(io, udp::endpoint(asio::ip::address_v4::loopback(), 0));
  const uint16_t port = s.local_endpoint().port();
  return port;  // closed on return; the TCP side of this port is free too (almost surely)
}

}  // namespace causeway::dns::testing
