// The steps the attachments (netns, serve, run) share where they do the same
// thing. Each attachment reads as its list of steps:
//
//   settings    net_settings (cli/net_options.hpp): forwards, DNS, NAT
//   engine      Runtime (cli/runtime.hpp), one engine per guest port
//   DNS         Runtime::enable_dns
//   forwards    Runtime::add_forwards (-p)
//   listeners   attach_auto_forwarder here, over the attachment's GuestSide
//               and listener source (sock_diag in a namespace, the agent in a VM)
//   mirrored    MirroredMode (cli/mirrored_mode.hpp)
//   control     attach_control here (--control)
//   run         the attachment's own signal handling around io_context::run
//
// Start-up errors are values here; the attachment prints them with its own
// prefix (fail_start) and exits.
//
// Thread safety: the engine thread, before and while its io_context runs.
#pragma once

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/system/result.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli/control.hpp"
#include "cli/net_options.hpp"
#include "cli/runtime.hpp"
#include "portfwd/auto_forwarder.hpp"

namespace causeway::cli {

// Prints "WHO: WHY" on stderr and returns `code`: the one shape of a
// start-up failure ("causeway netns: cannot ...").
int fail_start(std::string_view who, std::string_view why, int code = kExitFailure);

// The control API on `path` over the runtime; nullptr when `path` is empty.
// `extra` (optional) answers first; a null reply passes the request on to the runtime.
boost::system::result<std::unique_ptr<ControlServer>, std::string> attach_control(Runtime& rt, const std::string& path,
                                                                                  ControlHandler extra = {});

// The automatic forwarding policy before the attachment's own settings:
// --ignore-port (and the config file's ignoredPorts) never forwarded.
portfwd::PolicySettings auto_forward_policy(const std::vector<int>& ignored_ports);
// An AutoForwarder reaching the guest through `guest`, registered with the
// runtime, which keeps its policy in step with the manual forwards.
std::unique_ptr<portfwd::AutoForwarder> attach_auto_forwarder(Runtime& rt, portfwd::GuestSide guest,
                                                              const portfwd::PolicySettings& base);

// A QEMU stream netdev's largest frame: MTU + Ethernet header (+ slack for a
// VLAN tag QEMU may pass through).
size_t stream_max_frame(const netstack::NatConfig& nat);
// open + bind + listen on a unix socket path.
boost::system::error_code listen_unix(boost::asio::local::stream_protocol::acceptor& acceptor, const std::string& path,
                                      int backlog);

}  // namespace causeway::cli
