// `causeway run -d NAME [-u USER] [--cd DIR] [-- COMMAND…]`: run a command
// in NAME's VM, starting the VM if none runs (cli/instance_daemon.hpp).
//
// Theory of operation
//   1. Connect RUNTIME/instances/NAME/exec.sock. A VM that runs answers: the
//      join costs a connect, no lock (the ≤ 50 ms path).
//   2. Nobody answers: take RUNTIME/instances/NAME.start (flock, waiting
//      bounded: another `run -d NAME` may be starting it right now), connect
//      again (it may have just finished), else: if NAME's daemon still holds
//      its lock (it is powering off), wait for it to go; start the daemon and
//      wait for "ready" or its error; connect; release the start lock.
//      Concurrent starts therefore make one VM: the second waits for the
//      start lock and then finds exec.sock answering.
//   3. The exec session: the agent protocol over the socket
//      (SocketVsockStream + AgentSession, the same code the main session
//      uses over vsock) — Hello → Ready → Run{argv, env TERM only, tty,
//      rows/cols, user, cwd} → stdio (CommandIo: stdin, raw terminal, output
//      pumps, signals, resize) → Exited → our exit status.
//   A session that ends before Ready with no word (the VM was powering off
//   when we connected) is retried once through step 2; an Error before the
//   end (the daemon's refusal) is reported as is.
//   Missing distribution: "no distribution named X" with what to do, before
//   anything is started.
//
// Thread safety: runs on the caller's thread.
#pragma once

#include <string>
#include <vector>

#include "vmm/agent/protocol.hpp"

namespace causeway::cli {

struct JoinOptions {
  std::string name;
  agent::Run run;                        // argv, env, tty, user, cwd
  std::vector<std::string> daemon_args;  // "instance NAME [VM options]" for a new VM
  std::vector<std::string> vm_options;   // the VM options given (named when joining a running VM)
};

int run_in_instance(const JoinOptions& o);

}  // namespace causeway::cli
