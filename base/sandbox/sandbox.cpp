// The engine's confinement (see sandbox.hpp). First cut: the API and the rlimit raise; the
// layers follow.
#include "base/sandbox/sandbox.hpp"

#include <sys/resource.h>

namespace causeway::sandbox {
namespace {
// The one process-wide record of what confine() applied: the sandbox is a property of the
// process, not of an object graph (written once, before threads start; read-only after).
Status g_status;  // NOLINT(cppcoreguidelines-avoid-non-const-global-variables)
}  // namespace

rlim_t raise_nofile_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  rlimit core{0, 0};
  setrlimit(RLIMIT_CORE, &core);
  getrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

bool Status::on() const { return enabled && no_new_privs && caps_dropped && mount_isolated && seccomp && rlimits; }

nlohmann::json Status::to_json() const {
  return nlohmann::json{{"on", on()},
                        {"enabled", enabled},
                        {"mode", mode},
                        {"no_new_privs", no_new_privs},
                        {"caps_dropped", caps_dropped},
                        {"mount_isolated", mount_isolated},
                        {"seccomp", seccomp},
                        {"rlimits", rlimits},
                        {"syscalls", syscalls},
                        {"reason", reason}};
}

Status confine(const Policy& p) {
  Status s;
  s.enabled = p.enabled;
  s.mode = p.mode;
  s.reason = p.enabled ? "not implemented yet" : "--no-sandbox";
  g_status = s;
  return s;
}

const Status& current() { return g_status; }

std::string support_summary() { return "sandbox: not implemented yet"; }

}  // namespace causeway::sandbox
