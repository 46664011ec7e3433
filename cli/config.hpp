// Config file in `.wslconfig` syntax (INI): `[section]`, `key = value`,
// `#` or `;` comments. Sans-I/O: parse text, return values and warnings.
//
//   [wsl2]          memory, processors, kernel, kernelCommandLine,
//                   networkingMode (nat|mirrored), dnsTunneling, localhostForwarding,
//                   vmIdleTimeout (ms; default 60000; negative = never),
//                   pageReporting (default true)
//   [boot]          systemd (default false; the distribution's /etc/wsl.conf may ask too)
//   [experimental]  ignoredPorts (comma list), hostAddressLoopback
//   [causeway]      mtu, hostLoopback, ipv6, publish (comma list of -p specs),
//                   dnsRoutes (comma list of DOMAIN=SERVER[:PORT]), hostResolvConf
//
// Unknown keys or sections are warnings naming file and line; a malformed
// line or a bad value is an error (the caller exits with status 2).
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace causeway::cli {

// Defaults of the keys whose absence means something (WSL's defaults).
constexpr int64_t kDefaultVmIdleTimeoutMs = 60'000;
constexpr bool kDefaultPageReporting = true;

struct ConfigFile {
  // [wsl2]
  std::optional<std::string> memory;
  std::optional<int> processors;
  std::optional<std::string> kernel;
  std::optional<std::string> kernel_command_line;
  std::optional<std::string> networking_mode;
  std::optional<bool> dns_tunneling;
  std::optional<bool> localhost_forwarding;
  // How long a distribution's VM stays up with nothing in it (ms, WSL's unit); < 0 = never.
  std::optional<int64_t> vm_idle_timeout_ms;
  std::optional<bool> page_reporting;  // virtio-balloon free page reporting
  // [boot]
  std::optional<bool> systemd;  // the distribution's systemd as PID 1
  // [experimental]
  std::vector<uint16_t> ignored_ports;
  std::optional<bool> host_address_loopback;
  // [causeway]
  std::optional<int> mtu;
  std::optional<bool> host_loopback;
  std::optional<bool> ipv6;
  std::vector<std::string> publish;
  std::vector<std::string> dns_routes;
  std::optional<std::string> host_resolv_conf;

  std::vector<std::string> warnings;
};

// `origin` names the file in messages ("~/.config/causeway/config:12: ...").
boost::system::result<ConfigFile, std::string> parse_config(const std::string& text, const std::string& origin);
boost::system::result<ConfigFile, std::string> load_config(const std::string& path);

}  // namespace causeway::cli
