// causeway run: the VM (see attach_vm.cpp for the theory of operation).
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cli/instance_paths.hpp"
#include "cli/net_options.hpp"
#include "vmm/machine/accel.hpp"

namespace causeway::cli {

// Instance mode (the daemon of a distribution's persistent VM, cli/instance_daemon.hpp):
// the main agent session carries no command; exec.sock, idle shutdown, state.json
// (cli/instance_service.hpp) and a `shutdown` control request are added.
struct InstanceRole {
  InstancePaths paths;
  int64_t idle_timeout_ms = 60'000;
  nlohmann::json state;            // written to state.json (pid, qemu_pid, started, mode added)
  std::function<void()> on_ready;  // the VM is up and exec.sock listens
};

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
  std::string disk;                // --disk: a raw ext4 image as / (virtio-blk, cw.root=/dev/vda)
  bool page_reporting = true;      // virtio-balloon free page reporting ([wsl2] pageReporting)
  std::string user;                // -u: the guest account ("" = the distribution's default)
  std::string cwd;                 // --cd: the command's directory in the guest ("" = the agent's choice)
  // The guest computes the environment from the user (a distribution's userland):
  // send TERM only. Otherwise (the busybox image) PATH and HOME are sent as well.
  bool guest_env = false;
  const InstanceRole* instance = nullptr;  // set: instance mode (no command)
  // The confinement after set-up (sandbox_policy(): --no-sandbox, the resolver's and the
  // control socket's directories); the VM adds its mode and its own directory.
  sandbox::Policy sandbox;
};

// "512", "512M", "4G", "4GB" → MiB.
boost::system::result<uint64_t, std::string> parse_memory_mib(std::string_view text);

// Boots the guest, runs the command, returns its exit status (1 on our errors).
// Instance mode: serves the VM until it is shut down (0) or fails (1).
int attach_vm(const RunOptions& o, NetSettings s);

// The argv of an interactive login shell in a distribution: the user's shell
// from the guest's passwd (the agent sets SHELL), as a login shell.
std::vector<std::string> login_shell_argv();

}  // namespace causeway::cli
