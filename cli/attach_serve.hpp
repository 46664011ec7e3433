// causeway serve: be QEMU's network backend (`-netdev stream` over a unix
// socket; 4-byte big-endian length, then the frame).
//
//   causeway serve --qemu-socket PATH [OPTIONS]
//
// Steps (attach_serve.cpp): check the forwards' host ports → the engine and
// DNS → forwards (-p) → listen on the QEMU socket → control socket → accept
// QEMU connections, one guest (one engine) each → run until SIGINT/SIGTERM.
// Forwards belong to the process and live in the oldest connected guest
// (cli/runtime.hpp); there is no automatic forwarding and no mirrored mode.
//
// Thread safety: everything runs on the caller's thread (the engine thread).
#pragma once

#include <string>

#include "cli/net_options.hpp"

namespace causeway::cli {

// Returns 0 after SIGINT/SIGTERM, kExitUsage or kExitFailure.
int attach_serve(const NetOptions& net, const std::string& qemu_socket);

}  // namespace causeway::cli
