#include "netstack/budget.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace causeway::netstack {
namespace {

struct Share {
  size_t FdBudget::*cap;
  uint64_t per_mille;
  uint64_t fds_each;
  uint64_t ceiling;
};

// The table of budget.hpp's header, in the same order.
constexpr Share kShares[] = {
    {&FdBudget::tcp_flows, 400, 1, 4096},           {&FdBudget::slirp_sockets, 150, 1, 1024},
    {&FdBudget::forward_connections, 250, 2, 1024}, {&FdBudget::udp_forward_flows, 50, 1, 4096},
    {&FdBudget::auto_forwards, 50, 4, 256},         {&FdBudget::vsock_streams, 50, 1, 256},
    {&FdBudget::dns_tcp_connections, 20, 1, 64},    {&FdBudget::control_connections, 10, 1, 16},
};
constexpr size_t kDnsInFlight = 1024;  // dns::Proxy::kMaxInFlight: memory only

}  // namespace

FdBudget derive_budget(uint64_t nofile) {
  FdBudget b;
  b.nofile = nofile;
  b.limit_too_small = nofile < FdBudget::kReservedFds + FdBudget::kMinPool;
  b.pool = b.limit_too_small ? FdBudget::kMinPool : nofile - FdBudget::kReservedFds;
  for (const auto& s : kShares) {
    const uint64_t fds = b.pool * s.per_mille / 1000;
    b.*s.cap = static_cast<size_t>(std::clamp<uint64_t>(fds / s.fds_each, 1, s.ceiling));
  }
  b.dns_in_flight = kDnsInFlight;
  return b;
}

uint64_t FdBudget::descriptors_at_caps() const {
  uint64_t n = 0;
  for (const auto& s : kShares) n += (this->*s.cap) * s.fds_each;
  return n;
}

FdBudget FdBudget::from_process() {
  rlimit rl{};
  uint64_t n = 1024;  // Linux's default soft limit, if getrlimit could fail
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) n = rl.rlim_cur == RLIM_INFINITY ? (uint64_t{1} << 20) : rl.rlim_cur;
  return derive_budget(n);
}

}  // namespace causeway::netstack
