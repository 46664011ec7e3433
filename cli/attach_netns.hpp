// causeway netns: a network namespace attached to the engine through a tap.
//
//   causeway netns [OPTIONS] -- COMMAND [ARGS...]   a new namespace running COMMAND
//   causeway netns [OPTIONS] --attach PID|PATH      an existing namespace
//
// Steps (attach_netns.cpp): the tap's configuration → fork the namespace's
// child (or enter the existing namespace) and make its tap → the namespace
// helper (sockets inside the namespace, and every privileged operation on it
// from then on) → the engine and DNS → the tap as the guest port → forwards
// (-p) → control socket → mirrored mode → the listener source (sock_diag,
// automatic forwarding) → confine the engine (base/sandbox: no capability,
// seccomp, an empty root) → signals → release COMMAND → run.
//
// Thread safety: everything runs on the caller's thread (the engine thread).
#pragma once

#include <string>
#include <vector>

#include "cli/net_options.hpp"

namespace causeway::cli {

struct NetnsOptions {
  std::string attach;                // --attach PID|PATH; empty: a new namespace for `command`
  std::string ifname = "tap0";       // --ifname
  std::vector<std::string> command;  // after --
};

// Returns COMMAND's status (--attach: 0 when detached), kExitUsage or kExitFailure.
int attach_netns(const NetOptions& net, const NetnsOptions& o);

}  // namespace causeway::cli
