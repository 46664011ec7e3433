#include "cli/attach_steps.hpp"

#include <cstdio>

namespace causeway::cli {
namespace asio = boost::asio;

int fail_start(std::string_view who, std::string_view why, int code) {
  std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(who.size()), who.data(), static_cast<int>(why.size()),
               why.data());
  return code;
}

boost::system::result<std::unique_ptr<ControlServer>, std::string> attach_control(Runtime& rt, const std::string& path,
                                                                                  ControlHandler extra) {
  if (path.empty()) return std::unique_ptr<ControlServer>();
  auto ctl = std::make_unique<ControlServer>(rt.io(), path, [&rt, extra](const nlohmann::json& req) {
    if (extra) {
      auto reply = extra(req);
      if (!reply.is_null()) return reply;
    }
    return rt.handle_control(req);
  });
  if (auto r = ctl->start(); r.has_error()) return r.error();
  return ctl;
}

portfwd::PolicySettings auto_forward_policy(const std::vector<int>& ignored_ports) {
  portfwd::PolicySettings base;
  for (int p : ignored_ports) base.ignored.insert(static_cast<uint16_t>(p));
  return base;
}

std::unique_ptr<portfwd::AutoForwarder> attach_auto_forwarder(Runtime& rt, portfwd::GuestSide guest,
                                                              const portfwd::PolicySettings& base) {
  auto af = std::make_unique<portfwd::AutoForwarder>(rt.io(), rt.clock(), guest, base);
  af->set_limits(rt.budget().auto_forwards, rt.budget().forward_connections);
  rt.set_auto_forwarder(af.get(), base);
  return af;
}

size_t stream_max_frame(const netstack::NatConfig& nat) { return nat.mtu + netstack::kEthHeaderLen + 4; }

boost::system::error_code listen_unix(asio::local::stream_protocol::acceptor& acceptor, const std::string& path,
                                      int backlog) {
  boost::system::error_code ec;
  acceptor.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor.bind(asio::local::stream_protocol::endpoint(path), ec);
  if (!ec) acceptor.listen(backlog, ec);
  return ec;
}

}  // namespace causeway::cli
