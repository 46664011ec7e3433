#include "cli/mirrored_mode.hpp"

#include <spdlog/spdlog.h>

#include "cli/runtime.hpp"

namespace causeway::cli {
namespace mirror = netstack::mirror;
using json = nlohmann::json;

MirrorLinkEntry MirrorLinkTable::make(const std::string& name, int host_ifindex, size_t mtu,
                                      netstack::FramePort& port) const {
  mirror::MirrorLinkConfig mc;
  mc.name = name;
  mc.host_ifindex = host_ifindex;
  mc.mtu = mtu;
  MirrorLinkEntry e;
  e.link = std::make_unique<mirror::MirrorLink>(io_, port, mc);
  e.link->set_addresses(mirror::link_addresses(plan_, name));
  return e;
}

void MirrorLinkTable::insert(const std::string& name, MirrorLinkEntry entry) {
  const size_t mtu = entry.link->config().mtu;
  links_.emplace(name, std::move(entry));
  spdlog::debug("mirrored link {}: data path up (mtu {})", name, mtu);
}

MirrorLinkEntry* MirrorLinkTable::find(const std::string& name) {
  auto it = links_.find(name);
  return it == links_.end() ? nullptr : &it->second;
}

void MirrorLinkTable::set_mtu(const std::string& name, size_t mtu) {
  if (auto* e = find(name)) e->link->set_mtu(mtu);
}

void MirrorLinkTable::set_plan(const mirror::NetState& desired) {
  plan_ = desired;
  for (auto& [name, e] : links_) e.link->set_addresses(mirror::link_addresses(desired, name));
}

json MirrorLinkTable::data_path_json() const {
  json dp = json::object();
  for (const auto& [name, e] : links_) dp[name] = mirror::to_json(e.link->stats());
  return dp;
}

MirroredMode::MirroredMode(boost::asio::io_context& io)
    : io_(io), links_(io), view_(io, mirror::current_namespace_sockets()) {}

MirroredMode::~MirroredMode() = default;

void MirroredMode::follow(std::unique_ptr<mirror::GuestApplier> applier, mirror::PlanOptions options) {
  applier_ = std::move(applier);
  syncer_ = std::make_unique<mirror::MirrorSyncer>(io_, view_, *applier_, std::move(options));
  syncer_->set_on_plan([this](const mirror::NetState& desired) { links_.set_plan(desired); });
}

boost::system::result<void, std::string> MirroredMode::start() { return syncer_->start(); }

void MirroredMode::report_to(Runtime& rt, std::function<void(json&)> extend) {
  rt.set_mode("mirrored");
  rt.set_mirror_status([this, extend = std::move(extend)] {
    auto j = syncer_->status_json();
    j["data_path"] = links_.data_path_json();
    if (extend) extend(j);
    return j;
  });
}

}  // namespace causeway::cli
