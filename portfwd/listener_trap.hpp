// The bind/listen trap: a seccomp filter that turns bind(2) and listen(2)
// into user notifications (seccomp_unotify(2)), so whoever holds the
// notification descriptor learns the moment a process starts listening.
//
// Both users — the namespace attachment (netstack/netns_listener_source) and the
// guest agent (a static binary with no Boost.Asio) — share this code, so it
// depends on libc only.
//
// The trap never changes what a process does: every notification is answered
// with SECCOMP_USER_NOTIF_FLAG_CONTINUE and the kernel then runs the syscall
// as asked. The syscall completes only *after* the answer, so a watcher
// rescans a moment later, not at once. Only x86-64 syscall numbers are
// filtered; other ABIs fall through (the watcher's poll still sees them).
//
// Thread safety: install_listener_trap affects the calling thread (and what
// it forks/execs); a ListenerTrapResponder is confined to its caller.
#pragma once

#include <cstdint>
#include <vector>

namespace causeway::portfwd {

// Installs the trap on the calling process (inherited by children and across
// exec) and returns the notification descriptor (close-on-exec), or -errno.
// Needs CAP_SYS_ADMIN or no_new_privs. Async-signal-safe: call it after fork.
int install_listener_trap() noexcept;

class ListenerTrapResponder {
 public:
  ListenerTrapResponder();
  enum class Result {
    kAnswered,  // a bind/listen was let through: rescan shortly
    kNothing,   // spurious wakeup, or the process died meanwhile
    kHangup,    // every process under the filter has exited: stop watching
  };
  // Answers one pending notification on `notify_fd` (non-blocking: poll it first).
  Result answer_one(int notify_fd);

 private:
  // The kernel's structures may be larger than our headers' (newer kernels).
  std::vector<uint8_t> notif_;
  std::vector<uint8_t> resp_;
};

}  // namespace causeway::portfwd
