// list / terminate / shutdown; see instance_command.hpp.
#include "cli/instance_command.hpp"

#include <signal.h>

#include <cstdio>

#include <fmt/format.h>

#include "cli/control.hpp"
#include "cli/instance_paths.hpp"
#include "cli/net_options.hpp"
#include "vmm/distro/store.hpp"

namespace causeway::cli {
using json = nlohmann::json;

namespace {

bool running(const InstancePaths& p) { return !wait_instance_stopped(p, std::chrono::milliseconds(0)); }

std::string human_bytes(uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f}G", static_cast<double>(b) / (1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.0f}M", static_cast<double>(b) / (1ull << 20));
  return fmt::format("{}K", b >> 10);
}

// Sends the daemon one signal, if its state names it and it still holds the lock.
void signal_daemon(const InstancePaths& p, int sig) {
  auto state = read_state(p);
  if (!state || !running(p)) return;
  const int pid = state->value("pid", 0);
  if (pid > 1) ::kill(pid, sig);
}

}  // namespace

int list_distributions(bool running_only, bool verbose) {
  const distro::Dirs dirs = distro::default_dirs();
  distro::Store store(dirs.data);
  auto all = store.list();
  if (all.has_error()) return std::fprintf(stderr, "causeway list: %s\n", all.error().c_str()), kExitFailure;
  const auto def = store.default_name();
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : *all) {
    const InstancePaths p = instance_paths(dirs.runtime, d.name);
    const bool up = running(p);
    if (running_only && !up) continue;
    std::vector<std::string> row{(def && *def == d.name ? "* " : "  ") + d.name, up ? "Running" : "Stopped"};
    if (verbose) {
      const auto state = up ? read_state(p) : std::nullopt;
      row.push_back(state ? state->value("mode", "-") : "-");
      row.push_back(state ? std::to_string(state->value("pid", 0)) : "-");
      row.push_back(human_bytes(d.disk_bytes) + "/" + human_bytes(d.size_bytes));
      row.push_back(d.source);
    }
    rows.push_back(std::move(row));
  }
  if (rows.empty()) {
    if (running_only)
      std::puts("No distribution is running.");
    else
      std::puts("No distributions yet: causeway distro create NAME, or causeway distro import NAME ROOTFS.tar");
    return 0;
  }
  std::vector<std::string> head{"  NAME", "STATE"};
  if (verbose) head.insert(head.end(), {"MODE", "PID", "DISK", "SOURCE"});
  rows.insert(rows.begin(), head);
  std::vector<size_t> width(head.size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) line += i + 1 < r.size() ? fmt::format("{:<{}}  ", r[i], width[i]) : r[i];
    std::puts(line.c_str());
  }
  return 0;
}

int terminate_instances(const std::vector<std::string>& names, bool all) {
  const distro::Dirs dirs = distro::default_dirs();
  std::vector<InstancePaths> targets;
  for (const auto& n : all ? instance_names(dirs.runtime) : names) {
    if (auto bad = distro::check_name(n)) return std::fprintf(stderr, "causeway: %s\n", bad->c_str()), kExitUsage;
    const InstancePaths p = instance_paths(dirs.runtime, n);
    if (running(p)) {
      targets.push_back(p);
    } else if (!all) {
      auto found = distro::Store(dirs.data).find(n);
      if (found.has_error())
        return std::fprintf(stderr, "causeway terminate: %s\n", found.error().c_str()), kExitFailure;
      std::fprintf(stderr, "causeway terminate: %s is not running\n", n.c_str());
    }
  }
  // 1. Ask every VM at once; then wait for each.
  for (const auto& p : targets) {
    auto reply = control_request(p.control.string(), json{{"cmd", "shutdown"}});
    if (reply.has_error()) std::fprintf(stderr, "causeway: %s: %s\n", p.name.c_str(), reply.error().c_str());
  }
  int status = 0;
  for (const auto& p : targets) {
    if (wait_instance_stopped(p, kCleanStop)) continue;
    std::fprintf(stderr, "causeway: %s did not power off within %lld s; stopping its QEMU\n", p.name.c_str(),
                 static_cast<long long>(kCleanStop.count()));
    signal_daemon(p, SIGTERM);
    if (wait_instance_stopped(p, kForcedStop)) continue;
    signal_daemon(p, SIGKILL);
    if (wait_instance_stopped(p, kForcedStop)) continue;
    std::fprintf(stderr, "causeway: %s is still running (see %s)\n", p.name.c_str(), p.log.c_str());
    status = kExitFailure;
  }
  return status;
}

}  // namespace causeway::cli
