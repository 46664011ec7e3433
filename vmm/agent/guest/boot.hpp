// What the agent does as PID 1 before and after the session: mounts, kernel
// modules, the transport to the host, and powering off.
//
// Kernel command line parameters the agent reads (all optional; parameters
// with a dot are not passed to init by the kernel, so they come from
// /proc/cmdline):
//   cw.agent.transport=vsock|serial  vsock (default): AF_VSOCK to CID 2;
//                                    serial: the virtio-serial port named
//                                    org.causeway.agent (a debugging transport
//                                    that needs no vsock device on the host)
//   cw.agent.port=N                  vsock port on the host (default kAgentVsockPort)
//   cw.agent.connect_timeout=S       seconds to keep retrying the connection (default 30)
//   cw.agent.debug=1                 log every message on the console
//   cw.root=/dev/vda                 boot the ext4 disk as / (a distribution; rootfs.hpp);
//                                    without it the initramfs stays the root (busybox image)
//   cw.hostname=NAME                 the guest's hostname (else /etc/hostname, else "causeway")
//   cw.systemd=1                     run the distribution's systemd as PID 1, the agent beside it
//                                    (also asked for by /etc/wsl.conf [boot] systemd=true)
//
// Fatal errors are printed on the console (the host's console log) and the
// guest powers off: PID 1 must never exit — the kernel would panic.
//
// Thread safety: single-threaded, like the agent.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.hpp"

namespace causeway::agent::guest {

constexpr std::string_view kSerialPortName = "org.causeway.agent";

struct BootOptions {
  enum class Transport { Vsock, Serial };
  Transport transport = Transport::Vsock;
  uint32_t port = 0;  // 0: kAgentVsockPort
  std::chrono::seconds connect_timeout{30};
  bool debug = false;
  std::string root;                   // cw.root: a /dev/ path, or "" (the initramfs is the root)
  std::string hostname;               // cw.hostname, validated (valid_hostname)
  bool systemd = false;               // cw.systemd=1
  std::vector<std::string> warnings;  // unparsable cw.* values, reported to the host
};

// RFC 1123 host name: 1–64 bytes (the kernel's limit) of letters, digits, '-' and '.',
// labels not starting or ending with '-'.
bool valid_hostname(std::string_view name);

// Pure: reads the cw.agent.*, cw.root, cw.hostname and cw.systemd parameters out of a kernel
// command line.
BootOptions parse_kernel_cmdline(std::string_view cmdline);

// Writes "causeway-agent: <text>\n" to stderr (the console when PID 1).
void console(std::string_view text);

// Mounts proc, sys, devtmpfs, devpts, /dev/shm, /tmp, /run; the /dev/fd and
// /dev/std{in,out,err} links; points fds 0–2 at /dev/console; sets PATH/HOME/TERM.
// Returns problems.
std::vector<std::string> setup_system();

struct ModuleReport {
  int loaded = 0, already = 0, failed = 0;
  std::vector<std::string> lines;  // failures, by module
};
// Loads the modules listed in `list` (paths relative to /lib/modules/<release>,
// in dependency order, uncompressed) with finit_module(2).
ModuleReport load_modules(const std::string& list = "/lib/modules/load.list");

// Connects to the host (bounded retry). On failure returns an invalid fd and
// sets `error` to an actionable message.
UniqueFd connect_host(const BootOptions& opts, std::string& error);

std::string kernel_release();
uint32_t uptime_ms();

// sync(), then power off; never returns (falls back to reboot, which QEMU's
// -no-reboot turns into an exit, then to sleeping).
[[noreturn]] void power_off();

// Sets the hostname: `name` if given, else the first line of /etc/hostname, else
// "causeway". Returns the name set, or "" with `problem` set.
std::string apply_hostname(const std::string& name, std::string& problem);

}  // namespace causeway::agent::guest
