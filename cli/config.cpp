#include "cli/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

namespace causeway::cli {
namespace {

std::string trim(std::string s) {
  auto ns = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), ns));
  s.erase(std::find_if(s.rbegin(), s.rend(), ns).base(), s.end());
  return s;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::optional<bool> parse_bool(const std::string& v) {
  const auto l = lower(v);
  if (l == "true" || l == "yes" || l == "on" || l == "1") return true;
  if (l == "false" || l == "no" || l == "off" || l == "0") return false;
  return std::nullopt;
}

std::optional<int> parse_int(const std::string& v, int lo, int hi) {
  int x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc{} || p != v.data() + v.size() || x < lo || x > hi) return std::nullopt;
  return x;
}

std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

using Result = boost::system::result<ConfigFile, std::string>;
// ConfigFile is an aggregate whose first member takes a string, so a bare
// string would be ambiguous between value and error: be explicit.
Result fail(std::string why) { return Result(boost::system::in_place_error, std::move(why)); }

}  // namespace

boost::system::result<ConfigFile, std::string> parse_config(const std::string& text, const std::string& origin) {
  ConfigFile cfg;
  std::stringstream in(text);
  std::string raw;
  std::string section;
  int lineno = 0;
  // networkingMode may come from [wsl2] or, as WSL also accepts, from
  // [experimental]; resolved after the last line (WSL: [wsl2] wins).
  std::optional<std::string> wsl2_mode;
  std::optional<std::string> experimental_mode;
  std::string wsl2_mode_where;
  std::string experimental_mode_where;
  while (std::getline(in, raw)) {
    ++lineno;
    const std::string where = fmt::format("{}:{}", origin, lineno);
    std::string line = trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') return fail(fmt::format("{}: unterminated section header '{}'", where, line));
      section = lower(trim(line.substr(1, line.size() - 2)));
      if (section != "wsl2" && section != "experimental" && section != "causeway")
        cfg.warnings.push_back(fmt::format("{}: unknown section [{}] ignored", where, section));
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) return fail(fmt::format("{}: expected 'key = value', got '{}'", where, line));
    const std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    const std::string k = lower(key);
    auto bad = [&](std::string_view what) {
      return fail(fmt::format("{}: bad value '{}' for {}: expected {}", where, value, key, what));
    };
    auto set_bool = [&](std::optional<bool>& dst) -> bool {
      auto b = parse_bool(value);
      if (!b) return false;
      dst = *b;
      return true;
    };
    if (section == "wsl2") {
      if (k == "memory") cfg.memory = value;
      else if (k == "processors") {
        auto n = parse_int(value, 1, 1024);
        if (!n) return bad("a processor count");
        cfg.processors = n;
      } else if (k == "kernel") cfg.kernel = value;
      else if (k == "kernelcommandline") cfg.kernel_command_line = value;
      else if (k == "networkingmode") {
        const auto m = lower(value);
        if (m != "nat" && m != "mirrored") return bad("nat or mirrored");
        wsl2_mode = m;
        wsl2_mode_where = where;
      } else if (k == "dnstunneling") {
        if (!set_bool(cfg.dns_tunneling)) return bad("true or false");
      } else if (k == "localhostforwarding") {
        if (!set_bool(cfg.localhost_forwarding)) return bad("true or false");
      } else cfg.warnings.push_back(fmt::format("{}: unknown key '{}' in [wsl2] ignored", where, key));
    } else if (section == "experimental") {
      if (k == "ignoredports") {
        for (auto& p : split_list(value)) {
          auto n = parse_int(p, 1, 65535);
          if (!n) return bad("a comma-separated list of ports 1-65535");
          cfg.ignored_ports.push_back(static_cast<uint16_t>(*n));
        }
      } else if (k == "hostaddressloopback") {
        if (!set_bool(cfg.host_address_loopback)) return bad("true or false");
      } else if (k == "networkingmode") {  // an alias WSL accepts for [wsl2] networkingMode
        const auto m = lower(value);
        if (m != "nat" && m != "mirrored") return bad("nat or mirrored");
        experimental_mode = m;
        experimental_mode_where = where;
      } else cfg.warnings.push_back(fmt::format("{}: unknown key '{}' in [experimental] ignored", where, key));
    } else if (section == "causeway") {
      if (k == "mtu") {
        auto n = parse_int(value, 1280, 65520);
        if (!n) return bad("an MTU from 1280 to 65520");
        cfg.mtu = n;
      } else if (k == "hostloopback") {
        if (!set_bool(cfg.host_loopback)) return bad("true or false");
      } else if (k == "ipv6") {
        if (!set_bool(cfg.ipv6)) return bad("true or false");
      } else if (k == "publish") {
        auto l = split_list(value);
        cfg.publish.insert(cfg.publish.end(), l.begin(), l.end());
      } else if (k == "dnsroutes") {
        auto l = split_list(value);
        cfg.dns_routes.insert(cfg.dns_routes.end(), l.begin(), l.end());
      } else if (k == "hostresolvconf") {
        cfg.host_resolv_conf = value;
      } else cfg.warnings.push_back(fmt::format("{}: unknown key '{}' in [causeway] ignored", where, key));
    } else if (section.empty()) {
      return fail(fmt::format("{}: key '{}' outside any section (expected [wsl2] first)", where, key));
    }
  }
  cfg.networking_mode = wsl2_mode ? wsl2_mode : experimental_mode;
  if (wsl2_mode && experimental_mode)
    cfg.warnings.push_back(fmt::format("{}: networkingMode={} in [experimental] is overridden by [wsl2] "
                                       "networkingMode={} at {} (as in WSL, the [wsl2] key wins)",
                                       experimental_mode_where, *experimental_mode, *wsl2_mode, wsl2_mode_where));
  return cfg;
}

boost::system::result<ConfigFile, std::string> load_config(const std::string& path) {
  std::ifstream f(path);
  if (!f) return fail(fmt::format("cannot read config file {}: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), path);
}

}  // namespace causeway::cli
