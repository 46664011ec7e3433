// Runtime: the composition root's state for one causeway process — the NAT
// configuration, the guests attached (one for netns, one per connection for
// serve), the manual forwards and the control API over all of them.
//
// Forwards belong to the process, not to a connection: they are installed in
// the *primary* guest (the oldest attached one). When it leaves, they move to
// the next; with no guest attached they wait ("pending").
//
// Thread safety: confined to the engine executor.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "netstack/engine.hpp"
#include "netstack/forward.hpp"
#include "portfwd/auto_forwarder.hpp"

namespace causeway::cli {

struct Guest {
  std::string name;                      // "tap0 in pid 1234", "qemu connection 3"
  std::unique_ptr<netstack::FramePort> port;
  std::unique_ptr<netstack::Engine> engine;
  std::function<nlohmann::json()> port_stats;
};

class Runtime {
 public:
  Runtime(boost::asio::io_context& io, netstack::NatConfig nat, std::string attach);

  [[nodiscard]] boost::asio::io_context& io() { return io_; }
  [[nodiscard]] const Clock& clock() const { return clock_; }
  [[nodiscard]] const netstack::NatConfig& nat() const { return nat_; }

  // Attaches a guest; `make_port` builds its port, `start` connects the port
  // to the engine. Returns the guest (owned by the runtime).
  Guest& add_guest(std::string name, std::unique_ptr<netstack::FramePort> port,
                   const std::function<void(netstack::FramePort&, netstack::Engine&)>& start,
                   std::function<nlohmann::json()> port_stats);
  void remove_guest(const Guest* g);
  [[nodiscard]] size_t guest_count() const { return guests_.size(); }
  [[nodiscard]] netstack::Engine* primary_engine() { return primary(); }

  // Adds forwards to the process; installs them in the primary guest now if
  // there is one. On the first failure nothing of `fs` stays added.
  boost::system::result<void, std::string> add_forwards(const std::vector<netstack::PortForward>& fs);
  boost::system::result<void, std::string> remove_forwards(const std::vector<netstack::PortForward>& fs);

  // Automatic forwarding, when the attachment provides it. The runtime keeps
  // its policy in step with the manual forwards (manual wins).
  void set_auto_forwarder(portfwd::AutoForwarder* af, portfwd::PolicySettings base);
  [[nodiscard]] portfwd::PolicySettings auto_settings() const;

  nlohmann::json handle_control(const nlohmann::json& request);
  nlohmann::json ports_json() const;
  nlohmann::json stats_json() const;

 private:
  netstack::Engine* primary();
  void install_forwards(netstack::Engine& e);

  boost::asio::io_context& io_;
  SteadyClock clock_;
  netstack::NatConfig nat_;
  std::string attach_;
  std::list<Guest> guests_;
  std::vector<netstack::PortForward> forwards_;
  portfwd::AutoForwarder* auto_ = nullptr;
  portfwd::PolicySettings auto_base_;
  int64_t started_ms_;
  void sync_auto_settings();
};

nlohmann::json engine_stats_json(const netstack::EngineStats& s);

}  // namespace causeway::cli
