// libFuzzer target: mirrored mode from hostile netlink dumps — the dumps a guest namespace (or
// a host) answers, parsed by read_netlink_state (libnl's link and address caches and our own
// route dump), planned (plan), diffed against the guest's state (diff) and converged over
// several passes (converge), and the desired state sent as the agent's MirrorApply (the VM
// path's encoder, with its validation). In a namespace the guest's root answers these dumps.
//
// The netlink socket is real (NETLINK_ROUTE, bound) but its libnl callbacks are overridden:
// requests are swallowed and each dump request is answered with the next piece of the input,
// every message's sequence number set to the request's, and NLMSG_DONE once a piece is used
// up — so whatever the bytes are, they are what libnl parses.
//
// Input: u8 plan flags (bit 0 copy_mac, bit 1 an MTU cap of 1500, bit 2 reserve "eth0"), then
// dumps, each `u32 length, bytes` (netlink messages): links, addresses, routes of the host,
// then of the guest once per converge pass. max_len must allow 2 MiB (a full plan).
#include <linux/netlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "netstack/mirror/converge.hpp"
#include "netstack/mirror/host_view.hpp"
#include "netstack/mirror/plan.hpp"
#include "tests/fuzz/fuzz_input.hpp"
#include "vmm/agent/protocol.hpp"

using namespace causeway;
using namespace causeway::netstack::mirror;

namespace {

struct Feeder {
  fuzz::FuzzInput* in = nullptr;
  uint32_t seq = 0;
  std::vector<uint8_t> piece;
  bool served = false;
};
Feeder g_feed;

int fake_send(nl_sock*, nl_msg* msg) {
  g_feed.seq = nlmsg_hdr(msg)->nlmsg_seq;
  const uint32_t n = g_feed.in->u32() % (4u << 20);
  const auto b = g_feed.in->bytes(n);
  g_feed.piece.assign(b.begin(), b.end());
  g_feed.served = false;
  return static_cast<int>(nlmsg_hdr(msg)->nlmsg_len);
}

int fake_recv(nl_sock*, sockaddr_nl* nla, unsigned char** buf, ucred** creds) {
  std::memset(nla, 0, sizeof *nla);
  nla->nl_family = AF_NETLINK;
  if (creds) *creds = nullptr;
  std::vector<uint8_t> out;
  if (!g_feed.served) {
    out = g_feed.piece;
    g_feed.served = true;
    // Every whole message carries the request's sequence number (libnl checks it).
    size_t off = 0;
    while (out.size() - off >= sizeof(nlmsghdr)) {
      auto* h = reinterpret_cast<nlmsghdr*>(out.data() + off);  // SAFETY: bounds checked above
      h->nlmsg_seq = g_feed.seq;
      const size_t len = (size_t{h->nlmsg_len} + 3) & ~size_t{3};  // NLMSG_ALIGN wraps at 2^32
      if (h->nlmsg_len < sizeof(nlmsghdr) || len > out.size() - off) break;
      off += len;
    }
  }
  if (out.empty()) {  // the piece is used up: end the dump
    nlmsghdr done{};
    done.nlmsg_len = NLMSG_LENGTH(sizeof(int));
    done.nlmsg_type = NLMSG_DONE;
    done.nlmsg_flags = NLM_F_MULTI;
    done.nlmsg_seq = g_feed.seq;
    out.resize(done.nlmsg_len);
    std::memcpy(out.data(), &done, sizeof done);
  }
  *buf = static_cast<unsigned char*>(std::malloc(out.size()));
  std::memcpy(*buf, out.data(), out.size());
  return static_cast<int>(out.size());
}

class DumpApplier final : public StateApplier {
 public:
  explicit DumpApplier(nl_sock* sk) : sk_(sk) {}
  std::optional<std::string> read_managed(NetState& out) override {
    ReadCounters c;
    auto st = read_netlink_state(sk_, c);
    if (st.has_error()) return st.error();
    unmanaged_.clear();
    out = {};
    // As NetlinkGuestApplier: the guest's own links (lo, the NAT tap) are not managed.
    for (auto& l : st->links) {
      if (l.name == "lo" || l.name == "tap0")
        unmanaged_.insert(l.name);
      else
        out.links.push_back(std::move(l));
    }
    out.addresses = std::move(st->addresses);
    out.routes = std::move(st->routes);
    return std::nullopt;
  }
  [[nodiscard]] const std::set<std::string>& unmanaged_links() const override { return unmanaged_; }
  ApplyReport apply(const std::vector<Op>& ops) override {
    ApplyReport r;
    for (const auto& op : ops) (void)op.describe();
    r.applied = ops.size();
    return r;
  }

 private:
  nl_sock* sk_;
  std::set<std::string> unmanaged_;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static nl_sock* sk = [] {
    auto s = open_route_socket(current_namespace_sockets());
    if (s.has_error()) std::abort();
    nl_cb* cb = nl_socket_get_cb(s->get());
    nl_cb_overwrite_send(cb, fake_send);
    nl_cb_overwrite_recv(cb, fake_recv);
    nl_cb_put(cb);
    return s->release();
  }();
  fuzz::FuzzInput in(data, size);
  g_feed = {};
  g_feed.in = &in;
  const uint8_t flags = in.u8();
  ReadCounters counters;
  auto host = read_netlink_state(sk, counters);
  static const bool debug = std::getenv("CAUSEWAY_FUZZ_DEBUG") != nullptr;
  if (debug)
    std::fprintf(stderr, "host: %s\n",
                 host.has_error() ? host.error().c_str()
                                  : fmt::format("{} links, {} addresses, {} routes", host->links.size(),
                                                host->addresses.size(), host->routes.size())
                                        .c_str());
  if (host.has_error()) return 0;
  PlanOptions opts;
  opts.copy_mac = flags & 1;
  if (flags & 2) opts.max_link_mtu = 1500;
  opts.reserved_names = {"lo", "tap0"};
  if (flags & 4) opts.reserved_names.insert("eth0");
  DumpApplier guest(sk);
  const auto result = converge(guest, [&](const std::set<std::string>& unmanaged) {
    PlanOptions o = opts;
    o.reserved_names.insert(unmanaged.begin(), unmanaged.end());
    auto p = plan(*host, o);
    // The VM path sends the same desired state to the agent; it must always encode.
    agent::MirrorApply m{1, p.desired};
    std::vector<uint8_t> bytes;
    if (encode_checked(m, bytes)) std::abort();
    return p.desired;
  });
  if (debug)
    std::fprintf(stderr, "converge: %zu passes, %zu changes, converged %d, read_failed %d, %zu links\n", result.passes,
                 result.changes, int(result.converged), int(result.read_failed), result.actual.links.size());
  (void)diff(*host, result.actual);
  return 0;
}
