// causeway run: the VM (see attach_vm.cpp for the theory of operation).
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cli/net_options.hpp"
#include "vmm/machine/accel.hpp"

namespace causeway::cli {

struct RunOptions {
  std::vector<std::string> command{"/bin/sh"};
  bool tty = false;  // a pty in the guest (interactive)
  unsigned cpus = 1;
  uint64_t memory_mib = 512;
  std::string guest_dir;  // vmlinuz + initramfs.cpio.gz
  std::string kernel, initrd, cmdline;
  std::string vm_net = "vhost-user";  // or "stream"
  std::string machine = "q35";        // or "microvm"
  machine::AccelRequest accel = machine::AccelRequest::Auto;
  std::string console_log;
  bool quiet = false;
  std::string control;             // --control: serve the control API here
  std::string mode = "nat";        // or "mirrored" (cli/mirror_vm.hpp)
  bool auto_forward = true;        // guest listeners → host localhost (agent + vsock relays)
  std::vector<int> ignored_ports;  // never forwarded automatically
};

// "512", "512M", "4G", "4GB" → MiB.
boost::system::result<uint64_t, std::string> parse_memory_mib(std::string_view text);

// Boots the guest, runs the command, returns its exit status (1 on our errors).
int attach_vm(const RunOptions& o, NetSettings s);

}  // namespace causeway::cli
