// `causeway list`, `causeway terminate NAME`, `causeway shutdown`: the
// distributions and their VMs (instances, cli/instance_daemon.hpp).
//
//   list [--running] [--verbose]   the store's distributions, default marked
//                                  '*', STATE Running/Stopped (WSL's `wsl -l -v`
//                                  shape); --verbose adds MODE, PID, DISK, SOURCE
//   terminate NAME                 powers NAME's VM off cleanly and waits
//   shutdown                       every running VM
//
// Terminating, in steps, each bounded (TCG powers off in a few seconds):
//   1. the control request `shutdown` (the guest syncs and powers off, QEMU
//      exits, the daemon removes its files and exits: its lock is released);
//   2. past kCleanStop: SIGTERM to the daemon (it stops QEMU: SIGTERM, then
//      SIGKILL);
//   3. past kForcedStop more: SIGKILL to the daemon (QEMU dies with it,
//      PR_SET_PDEATHSIG).
// A VM killed this way leaves a disk that the next boot checks (fsck) and mounts.
// "Running" is the daemon's lock being held (probed shared: a probe never
// makes a starting daemon fail).
//
// Thread safety: process-level functions, called from main.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace causeway::cli {

constexpr auto kCleanStop = std::chrono::seconds(30);
constexpr auto kForcedStop = std::chrono::seconds(10);

int list_distributions(bool running_only, bool verbose);
int terminate_instances(const std::vector<std::string>& names, bool all);

}  // namespace causeway::cli
