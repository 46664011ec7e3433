// A namespace with a server in it: `causeway netns OPTIONS -- causeway-netprobe
// serve` running in the background, for tests of host → guest forwards.
//
// Readiness is observed, not assumed: the constructor returns, and ready()
// reports, once the guest server has printed "ready" — which it does after
// binding, and causeway only lets COMMAND start after its forwards and
// control socket are up.
//
// Thread safety: confined to the test's thread.
#pragma once

#include <string>
#include <vector>

#include "tests/integration/causeway_env.hpp"
#include "tests/integration/harness.hpp"

namespace causeway::integration {

// Inside a fresh namespace every port is free, so fixed guest ports are hermetic.
inline constexpr uint16_t kGuestTcpPort = 8080;
inline constexpr uint16_t kGuestUdpPort = 8081;

class GuestServer {
 public:
  enum class Control { kNone, kSocket };

  // `control` kSocket adds --control with a socket in a private directory.
  explicit GuestServer(std::vector<std::string> options, Control control = Control::kNone)
      : control_socket_(control == Control::kSocket ? (dir_.path() / "control.sock").string() : ""),
        process_(argv(std::move(options), control_socket_), dir_.path(), "causeway"),
        ready_(process_.wait_for_output("ready", kStartTimeout)) {}

  bool ready() const { return ready_; }
  BackgroundProcess& process() { return process_; }
  const std::string& control_socket() const { return control_socket_; }

 private:
  static std::vector<std::string> argv(std::vector<std::string> options, const std::string& control_socket) {
    if (!control_socket.empty()) {
      options.emplace_back("--control");
      options.push_back(control_socket);
    }
    return netns_argv(std::move(options), {kNetprobe, "serve", "--tcp", std::to_string(kGuestTcpPort), "--udp",
                                           std::to_string(kGuestUdpPort), "--lifetime", "40"});
  }

  TempDir dir_;
  std::string control_socket_;
  BackgroundProcess process_;
  bool ready_;
};

}  // namespace causeway::integration
