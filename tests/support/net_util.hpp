// Blocking socket helpers shared by the integration-test harness (host side)
// and causeway-netprobe (guest side, run inside namespaces).
//
// Both ends speak one trivial protocol so a test can tell a real round trip
// from an accident: a request is one line (TCP) or one datagram (UDP), and
// the reply is "echo:" followed by the request — transformed, so a reply can
// never be a loopback of the test's own bytes.
//
// Every call is bounded by the timeout it is given; none of them retries.
//
// Thread safety: free functions with no shared state; safe from any thread.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace causeway::testtools {

inline constexpr std::string_view kEchoPrefix = "echo:";
inline constexpr size_t kMaxMessage = 64 * 1024;  // bytes; larger requests are cut here

// The echo protocol's reply to one request.
std::string echo_reply(std::string_view request);

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family() const { return addr.ss_family; }
};

// A numeric IPv4 or IPv6 address (no brackets) and a port; nullopt if `ip` is neither.
std::optional<Endpoint> make_endpoint(std::string_view ip, uint16_t port);

// "127.0.0.1:80" or "[::1]:80".
std::string to_string(const Endpoint& e);

// The outcome of one request/reply exchange.
struct Exchange {
  std::string reply;
  int error = 0;     // 0 on success, else an errno value (ETIMEDOUT when the deadline passed)
  std::string step;  // where it failed: "address", "socket", "connect", "send", "recv"

  bool ok() const { return error == 0; }
  std::string describe() const;  // for assertion messages
};

// Connects, sends `message`, reads until the peer closes. A peer that accepts
// and then resets or closes without a byte fails with step "recv".
Exchange tcp_exchange(std::string_view ip, uint16_t port, std::string_view message, std::chrono::milliseconds timeout);

// Sends one datagram and waits for one reply datagram.
Exchange udp_exchange(std::string_view ip, uint16_t port, std::string_view message, std::chrono::milliseconds timeout);

}  // namespace causeway::testtools
