#include "cli/mirror_vm.hpp"

#include <spdlog/spdlog.h>

#include <set>

namespace causeway::cli {

namespace mirror = netstack::mirror;

AgentGuestApplier::AgentGuestApplier(boost::asio::io_context& io, Send send, std::chrono::milliseconds timeout)
    : send_(std::move(send)), timeout_(timeout), timer_(io) {}

AgentGuestApplier::~AgentGuestApplier() { timer_.cancel(); }

mirror::ConvergeResult AgentGuestApplier::failure(std::string op, std::string error) {
  mirror::ConvergeResult r;
  r.errors.push_back(mirror::OpError{std::move(op), std::move(error)});
  r.errors_total = 1;
  r.read_failed = true;  // nothing known about the guest's state: keep the last view
  return r;
}

void AgentGuestApplier::converge(mirror::DesiredFn desired, std::function<void(mirror::ConvergeResult)> done) {
  if (ended_) return done(failure("send MirrorApply", "the guest agent session has ended"));
  agent::MirrorApply m;
  m.generation = ++generation_;
  m.desired = desired(unmanaged_);
  ++counters_.applies;
  if (auto ec = send_(m)) {
    ++counters_.send_errors;
    return done(failure("send MirrorApply", ec.message()));
  }
  waiting_ = m.generation;
  last_desired_ = std::move(m.desired);
  done_ = std::move(done);
  timer_.expires_after(timeout_);
  timer_.async_wait([this, gen = m.generation](boost::system::error_code ec) {
    if (ec || waiting_ != gen) return;
    ++counters_.timeouts;
    spdlog::warn("mirror: no report from the guest agent within {} ms", timeout_.count());
    complete(failure("await MirrorReport",
                     "no report from the guest agent within " + std::to_string(timeout_.count()) + " ms"));
  });
}

void AgentGuestApplier::on_report(const agent::MirrorReport& rep) {
  if (!waiting_ || rep.generation != *waiting_) {
    ++counters_.stale_reports;
    return;
  }
  ++counters_.reports;
  mirror::ConvergeResult r;
  r.changes = rep.changes;
  r.passes = rep.passes;
  r.converged = rep.converged;
  r.read_failed = rep.read_failed;
  for (const auto& e : rep.errors) r.errors.push_back(mirror::OpError{e.op, e.error});
  r.errors_total = std::max<size_t>(rep.errors_total, rep.errors.size());
  r.actual = rep.actual;
  r.unmanaged.insert(rep.unmanaged.begin(), rep.unmanaged.end());
  if (!rep.read_failed) {
    unmanaged_ = r.unmanaged;
    unmanaged_.insert({"lo", "eth0"});  // whatever the guest says, never plan over these
    if (on_guest_state_) {
      mirror::NetState planned;
      for (const auto& l : r.actual.links) {
        const auto* want = last_desired_.find_link(l.name);
        if (want && want->mac == l.mac) planned.links.push_back(*want);
      }
      on_guest_state_(planned);
    }
  }
  complete(std::move(r));
}

void AgentGuestApplier::on_session_end() {
  ended_ = true;
  if (waiting_) complete(failure("await MirrorReport", "the guest agent session has ended"));
}

void AgentGuestApplier::complete(mirror::ConvergeResult r) {
  waiting_.reset();
  timer_.cancel();
  auto done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(r));
}

void sync_vm_links(MirrorLinkTable& links, netstack::FrameDemux& demux, netstack::FramePort& nic,
                   const mirror::NetState& reported) {
  std::set<std::string> present;
  for (const auto& l : reported.links) {
    if (!l.mac) continue;
    present.insert(l.name);
    auto* e = links.find(l.name);
    if (e && e->mac != *l.mac) {
      demux.remove(e->mac);
      links.erase(l.name);
      e = nullptr;
    }
    if (e) {
      e->link->set_mtu(l.mtu);
      continue;
    }
    // The plan's MAC is 02:43:57:4d + the host ifindex's low 16 bits (plan.cpp).
    MirrorLinkEntry r = links.make(l.name, ((*l.mac)[4] << 8) | (*l.mac)[5], l.mtu, nic);
    r.mac = *l.mac;
    if (!demux.add(r.mac, *r.link)) {
      spdlog::warn("mirrored link {}: no data path (more than {} links)", l.name, netstack::FrameDemux::kMaxEntries);
      continue;
    }
    links.insert(l.name, std::move(r));
  }
  auto& all = links.entries();
  for (auto it = all.begin(); it != all.end();) {
    if (present.count(it->first)) {
      ++it;
    } else {
      demux.remove(it->second.mac);
      it = all.erase(it);
    }
  }
}

}  // namespace causeway::cli
