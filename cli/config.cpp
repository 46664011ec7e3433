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

// One `key = value` line.
struct KeyValue {
  std::string where;  // "FILE:LINE"
  std::string key;    // as written
  std::string k;      // lower case
  std::string value;  // unquoted
};

// A key's error, or nullopt when it was taken (or ignored with a warning).
using KeyError = std::optional<std::string>;

KeyError bad(const KeyValue& kv, std::string_view what) {
  return fmt::format("{}: bad value '{}' for {}: expected {}", kv.where, kv.value, kv.key, what);
}

KeyError set_bool(const KeyValue& kv, std::optional<bool>& dst) {
  auto b = parse_bool(kv.value);
  if (!b) return bad(kv, "true or false");
  dst = *b;
  return std::nullopt;
}

void unknown_key(ConfigFile& cfg, const KeyValue& kv, std::string_view section) {
  cfg.warnings.push_back(fmt::format("{}: unknown key '{}' in [{}] ignored", kv.where, kv.key, section));
}

// The whole file's state while its lines are read.
struct Parser {
  ConfigFile cfg;
  // networkingMode may come from [wsl2] or, as WSL also accepts, from
  // [experimental]; resolved after the last line (WSL: [wsl2] wins).
  std::optional<std::string> wsl2_mode;
  std::optional<std::string> experimental_mode;
  std::string wsl2_mode_where;
  std::string experimental_mode_where;
};

KeyError networking_mode(const KeyValue& kv, std::optional<std::string>& mode, std::string& where) {
  const auto m = lower(kv.value);
  if (m != "nat" && m != "mirrored") return bad(kv, "nat or mirrored");
  mode = m;
  where = kv.where;
  return std::nullopt;
}

KeyError wsl2_key(Parser& p, const KeyValue& kv) {
  auto& cfg = p.cfg;
  const auto& k = kv.k;
  if (k == "memory")
    cfg.memory = kv.value;
  else if (k == "processors") {
    auto n = parse_int(kv.value, 1, 1024);
    if (!n) return bad(kv, "a processor count");
    cfg.processors = n;
  } else if (k == "kernel")
    cfg.kernel = kv.value;
  else if (k == "kernelcommandline")
    cfg.kernel_command_line = kv.value;
  else if (k == "networkingmode")
    return networking_mode(kv, p.wsl2_mode, p.wsl2_mode_where);
  else if (k == "dnstunneling")
    return set_bool(kv, cfg.dns_tunneling);
  else if (k == "localhostforwarding")
    return set_bool(kv, cfg.localhost_forwarding);
  else if (k == "vmidletimeout") {
    int64_t ms = 0;
    const auto* end = kv.value.data() + kv.value.size();
    auto [p_end, ec] = std::from_chars(kv.value.data(), end, ms);
    if (ec != std::errc{} || p_end != end) return bad(kv, "milliseconds (e.g. 60000; a negative value: never)");
    cfg.vm_idle_timeout_ms = ms;
  } else if (k == "pagereporting")
    return set_bool(kv, cfg.page_reporting);
  else
    unknown_key(cfg, kv, "wsl2");
  return std::nullopt;
}

KeyError experimental_key(Parser& p, const KeyValue& kv) {
  auto& cfg = p.cfg;
  const auto& k = kv.k;
  if (k == "ignoredports") {
    for (auto& port : split_list(kv.value)) {
      auto n = parse_int(port, 1, 65535);
      if (!n) return bad(kv, "a comma-separated list of ports 1-65535");
      cfg.ignored_ports.push_back(static_cast<uint16_t>(*n));
    }
  } else if (k == "hostaddressloopback") {
    return set_bool(kv, cfg.host_address_loopback);
  } else if (k == "networkingmode") {  // an alias WSL accepts for [wsl2] networkingMode
    return networking_mode(kv, p.experimental_mode, p.experimental_mode_where);
  } else {
    unknown_key(cfg, kv, "experimental");
  }
  return std::nullopt;
}

KeyError causeway_key(Parser& p, const KeyValue& kv) {
  auto& cfg = p.cfg;
  const auto& k = kv.k;
  if (k == "mtu") {
    auto n = parse_int(kv.value, 1280, 65520);
    if (!n) return bad(kv, "an MTU from 1280 to 65520");
    cfg.mtu = n;
  } else if (k == "hostloopback") {
    return set_bool(kv, cfg.host_loopback);
  } else if (k == "ipv6") {
    return set_bool(kv, cfg.ipv6);
  } else if (k == "publish") {
    auto l = split_list(kv.value);
    cfg.publish.insert(cfg.publish.end(), l.begin(), l.end());
  } else if (k == "dnsroutes") {
    auto l = split_list(kv.value);
    cfg.dns_routes.insert(cfg.dns_routes.end(), l.begin(), l.end());
  } else if (k == "hostresolvconf") {
    cfg.host_resolv_conf = kv.value;
  } else {
    unknown_key(cfg, kv, "causeway");
  }
  return std::nullopt;
}

KeyError boot_key(Parser& p, const KeyValue& kv) {
  if (kv.k == "systemd") return set_bool(kv, p.cfg.systemd);
  unknown_key(p.cfg, kv, "boot");
  return std::nullopt;
}

// A `key = value` line in `section` (lower case; empty before the first header).
KeyError section_key(Parser& p, const std::string& section, const KeyValue& kv) {
  if (section == "wsl2") return wsl2_key(p, kv);
  if (section == "experimental") return experimental_key(p, kv);
  if (section == "causeway") return causeway_key(p, kv);
  if (section == "boot") return boot_key(p, kv);
  if (section.empty()) return fmt::format("{}: key '{}' outside any section (expected [wsl2] first)", kv.where, kv.key);
  return std::nullopt;  // an unknown section: warned about at its header
}

}  // namespace

boost::system::result<ConfigFile, std::string> parse_config(const std::string& text, const std::string& origin) {
  Parser p;
  std::stringstream in(text);
  std::string raw;
  std::string section;
  int lineno = 0;
  while (std::getline(in, raw)) {
    ++lineno;
    const std::string where = fmt::format("{}:{}", origin, lineno);
    std::string line = trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') return fail(fmt::format("{}: unterminated section header '{}'", where, line));
      section = lower(trim(line.substr(1, line.size() - 2)));
      if (section != "wsl2" && section != "experimental" && section != "causeway" && section != "boot")
        p.cfg.warnings.push_back(fmt::format("{}: unknown section [{}] ignored", where, section));
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) return fail(fmt::format("{}: expected 'key = value', got '{}'", where, line));
    KeyValue kv{where, trim(line.substr(0, eq)), {}, trim(line.substr(eq + 1))};
    if (kv.value.size() >= 2 && kv.value.front() == '"' && kv.value.back() == '"')
      kv.value = kv.value.substr(1, kv.value.size() - 2);
    kv.k = lower(kv.key);
    if (auto err = section_key(p, section, kv)) return fail(std::move(*err));
  }
  auto& cfg = p.cfg;
  cfg.networking_mode = p.wsl2_mode ? p.wsl2_mode : p.experimental_mode;
  if (p.wsl2_mode && p.experimental_mode)
    cfg.warnings.push_back(
        fmt::format("{}: networkingMode={} in [experimental] is overridden by [wsl2] "
                    "networkingMode={} at {} (as in WSL, the [wsl2] key wins)",
                    p.experimental_mode_where, *p.experimental_mode, *p.wsl2_mode, p.wsl2_mode_where));
  return std::move(cfg);
}

boost::system::result<ConfigFile, std::string> load_config(const std::string& path) {
  std::ifstream f(path);
  if (!f) return fail(fmt::format("cannot read config file {}: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), path);
}

}  // namespace causeway::cli
