// The networking options every attachment (netns, serve, run) shares, and
// what they become: the engine's NatConfig, the DNS set-up and the manual
// forwards (-p). The command line and the config file fill NetOptions
// (cli/main.cpp); the attachments read NetSettings.
//
// Errors are printed here, one line for the user, and the caller exits with
// kExitUsage: every one of them is a bad option.
//
// Thread safety: plain data and pure functions; used before the engine starts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/sandbox/sandbox.hpp"
#include "cli/runtime.hpp"
#include "netstack/forward.hpp"
#include "netstack/nat_config.hpp"

namespace causeway::cli {

inline constexpr int kExitUsage = 2;
inline constexpr int kExitFailure = 1;

struct NetOptions {
  uint64_t command_nofile_soft = 0;  // the open-file limit before raise_nofile_limit(), for COMMAND
  int mtu = static_cast<int>(netstack::kMaxMtu);
  bool no_host_loopback = false;
  bool no_ipv6 = false;
  std::vector<std::string> publish;
  std::string control;
  std::string config;
  std::vector<std::string> dns_search;
  bool no_auto_forward = false;
  std::vector<int> ignored_ports;
  bool no_dns_tunneling = false;
  std::string host_resolv_conf = "/etc/resolv.conf";
  std::vector<std::string> dns_routes;
  std::string tcp_engine = "auto";
  bool no_offload = false;           // netns only: a tap without checksum/TSO offloads
  std::string mode = "nat";          // netns and run: nat or mirrored (--mode, networkingMode)
  std::string forward_source_ports;  // FIRST-LAST; empty: the default range
  bool no_sandbox = false;           // --no-sandbox: the engine keeps its privileges (debugging)
};

// What the options mean to the engine.
struct NetSettings {
  std::vector<netstack::PortForward> forwards;  // -p, in order
  DnsSetup dns;
  netstack::NatConfig nat;
};

// The -p specs, then the DNS set-up, then the NAT configuration; nullopt
// after printing the first error (exit with kExitUsage).
std::optional<NetSettings> net_settings(const NetOptions& o);

netstack::NatConfig nat_config(const NetOptions& o);
std::optional<DnsSetup> dns_setup(const NetOptions& o);
std::optional<std::vector<netstack::PortForward>> parse_publish(const NetOptions& o);

// The confinement every attachment starts from (base/sandbox/sandbox.hpp), for `mode`:
// off with --no-sandbox; read-only, the directories of the resolver file and of every
// file its symlinks lead to (the DNS watch re-reads it and re-adds its watches; without
// DNS tunneling libslirp reads /etc/resolv.conf itself); read-write, the control
// socket's directory (its unlink at exit). The attachment adds its own paths and calls
// sandbox::confine() after its set-up, before any thread starts.
sandbox::Policy sandbox_policy(const NetOptions& o, std::string mode);

}  // namespace causeway::cli
