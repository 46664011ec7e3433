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
#include "netstack/budget.hpp"
#include "netstack/forward.hpp"
#include "dns/cares_resolver.hpp"
#include "dns/host_dns_watch.hpp"
#include "dns/proxy.hpp"
#include "netstack/dns_tcp_frontend.hpp"
#include "portfwd/auto_forwarder.hpp"

namespace causeway::cli {

struct Guest {
  std::string name;  // "tap0 in pid 1234", "qemu connection 3"
  std::unique_ptr<netstack::FramePort> port;
  std::unique_ptr<netstack::Engine> engine;
  std::function<nlohmann::json()> port_stats;
};

struct DnsSetup {
  bool tunneling = true;  // false: libslirp's plain forwarding (first host server)
  std::string host_resolv_conf = "/etc/resolv.conf";
  std::vector<dns::DnsRoute> routes;  // --dns-route
};

class Runtime {
 public:
  Runtime(boost::asio::io_context& io, netstack::NatConfig nat, std::string attach);
  ~Runtime();

  [[nodiscard]] boost::asio::io_context& io() { return io_; }
  [[nodiscard]] const Clock& clock() const { return clock_; }
  [[nodiscard]] const netstack::NatConfig& nat() const { return nat_; }
  // The descriptor budget every cap comes from (netstack/budget.hpp), read once at
  // construction from RLIMIT_NOFILE.
  [[nodiscard]] const netstack::FdBudget& budget() const { return budget_; }

  // Starts the DNS proxy (dns/) that every guest attached later uses.
  // Call before add_guest. Errors are one line for the user.
  boost::system::result<void, std::string> enable_dns(const DnsSetup& setup);
  // Called with the host's search domains whenever they change.
  void set_on_dns_search_change(std::function<void(const std::vector<std::string>&)> cb) {
    on_search_change_ = std::move(cb);
  }
  [[nodiscard]] const dns::HostDnsWatch* dns_watch() const { return dns_watch_.get(); }
  // The private directory of the DNS-over-TCP socket (empty without DNS
  // tunneling): a confined engine keeps it reachable (libslirp connects to it).
  [[nodiscard]] const std::string& dns_dir() const { return dns_dir_; }

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

  // Networking mode shown by `status` ("nat" unless told otherwise).
  void set_mode(std::string mode) { mode_ = std::move(mode); }
  // Mirrored mode: `{"cmd":"mirror"}` answers {"ok":true,"mirror":status()}.
  void set_mirror_status(std::function<nlohmann::json()> status) { mirror_status_ = std::move(status); }

  nlohmann::json handle_control(const nlohmann::json& request);
  nlohmann::json ports_json() const;
  nlohmann::json stats_json() const;
  // Accepts paused for want of descriptors (base/accept_backoff.hpp): every
  // engine's forwards, the automatic forwards and DNS over TCP. The control
  // socket adds its own to the `status` reply.
  [[nodiscard]] uint64_t accept_backoffs() const;

 private:
  netstack::Engine* primary();
  void install_forwards(netstack::Engine& e);

  boost::asio::io_context& io_;
  SteadyClock clock_;
  netstack::FdBudget budget_;
  netstack::NatConfig nat_;
  std::string attach_;
  std::list<Guest> guests_;
  std::vector<netstack::PortForward> forwards_;
  portfwd::AutoForwarder* auto_ = nullptr;
  portfwd::PolicySettings auto_base_;
  int64_t started_ms_;
  void sync_auto_settings();
  // DNS (declared in dependency order: destroyed frontend first, watch last).
  std::unique_ptr<dns::HostDnsWatch> dns_watch_;
  std::unique_ptr<dns::CaresResolver> resolver_;
  std::unique_ptr<dns::Proxy> proxy_;
  std::unique_ptr<netstack::DnsTcpFrontend> dns_tcp_;
  std::string dns_dir_;
  std::function<void(const std::vector<std::string>&)> on_search_change_;
  std::string mode_ = "nat";
  std::function<nlohmann::json()> mirror_status_;
};

nlohmann::json engine_stats_json(const netstack::EngineStats& s);
// The "budget" object of `ctl stats`: the caps and the limit they come from.
nlohmann::json budget_json(const netstack::FdBudget& b);

}  // namespace causeway::cli
