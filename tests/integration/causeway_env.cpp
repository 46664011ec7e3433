#include "tests/integration/causeway_env.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace causeway::integration {
namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::vector<std::string> netns_argv(std::vector<std::string> options, const std::vector<std::string>& command) {
  std::vector<std::string> argv{kCauseway, "netns"};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.emplace_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

std::vector<std::string> ctl_argv(const std::string& socket, const std::vector<std::string>& args) {
  std::vector<std::string> argv{kCauseway, "ctl", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::vector<std::string> as_nobody(const std::vector<std::string>& argv) {
  const std::string id = std::to_string(kNobody);
  std::vector<std::string> out{"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", "--reset-env"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::vector<std::string> probe_send(std::string_view proto, std::string_view ip, uint16_t port,
                                    std::string_view message, Ms timeout) {
  return {kNetprobe,
          "send",
          std::string(proto),
          std::string(ip),
          std::to_string(port),
          std::string(message),
          "--timeout-ms",
          std::to_string(timeout.count())};
}

std::optional<std::string> missing_tool(std::string_view tool, std::string_view debian_package) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    const auto colon = dirs.find(':');
    const std::filesystem::path candidate = std::filesystem::path(dirs.substr(0, colon)) / tool;
    if (::access(candidate.c_str(), X_OK) == 0) return std::nullopt;
    dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
  }
  return "needs " + std::string(tool) + ", which is not in PATH: apt-get install " + std::string(debian_package);
}

std::optional<std::string> netns_unavailable() {
  if (::geteuid() == 0) return std::nullopt;  // causeway makes the namespace directly
  const auto r = run({kNetprobe, "check-netns"});
  if (r.status == 0) return std::nullopt;
  return "needs root: causeway netns cannot work for uid " + std::to_string(::geteuid()) + " here (" + trimmed(r.err) +
         "); run as root, or `chmod 0666 /dev/net/tun` and enable unprivileged user namespaces";
}

std::optional<std::string> nobody_netns_unavailable() {
  if (::geteuid() != 0) return "needs root: switching to uid 65534 with setpriv";
  if (auto why = missing_tool("setpriv", "util-linux")) return why;
  const auto r = run(as_nobody({kNetprobe, "check-netns"}));
  if (r.status == 10)
    return "uid 65534 cannot open /dev/net/tun (" + trimmed(r.err) +
           "); Debian's udev makes it mode 0666 — fix with `chmod 0666 /dev/net/tun` (scripts/setup.sh does this)";
  if (r.status == 11)
    return "unprivileged user namespaces are disabled (" + trimmed(r.err) +
           "); enable with `sysctl kernel.unprivileged_userns_clone=1` / `sysctl user.max_user_namespaces=15000`";
  if (r.status != 0) return "cannot run causeway-netprobe as uid 65534: " + r.describe();
  return std::nullopt;
}

}  // namespace causeway::integration
