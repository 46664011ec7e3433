// Account and environment files of a distribution; see accounts.hpp.
#include "vmm/agent/guest/accounts.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>

namespace causeway::agent::guest {
namespace {

constexpr size_t kMaxFileBytes = 4 * 1024 * 1024;  // a passwd of ~50k users; more is not read

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool parse_id(std::string_view s, uint32_t& out) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// Lines without their '\n' (and a trailing '\r').
template <class F>
void for_each_line(std::string_view text, F&& f) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(line);
    start = end + 1;
  }
}

std::string unquote(std::string_view v) {
  v = trim(v);
  if (v.size() >= 2 && ((v.front() == '"' && v.back() == '"') || (v.front() == '\'' && v.back() == '\''))) {
    v = v.substr(1, v.size() - 2);
  }
  return std::string(v);
}

}  // namespace

std::string read_text_file(const std::string& path, bool* present) {
  std::FILE* f = std::fopen(path.c_str(), "rbe");
  if (present) *present = f != nullptr;
  if (!f) return {};
  std::string out;
  char buf[16 * 1024];
  size_t n;
  while (out.size() < kMaxFileBytes && (n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  if (out.size() > kMaxFileBytes) out.resize(kMaxFileBytes);
  return out;
}

std::vector<PasswdEntry> parse_passwd(std::string_view text) {
  std::vector<PasswdEntry> out;
  for_each_line(text, [&](std::string_view line) {
    if (line.empty() || line.front() == '#') return;
    const auto f = split(line, ':');
    if (f.size() != 7 || f[0].empty()) return;
    PasswdEntry e;
    if (!parse_id(f[2], e.uid) || !parse_id(f[3], e.gid)) return;
    e.name = f[0];
    e.gecos = f[4];
    e.home = f[5];
    e.shell = f[6];
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<GroupEntry> parse_group(std::string_view text) {
  std::vector<GroupEntry> out;
  for_each_line(text, [&](std::string_view line) {
    if (line.empty() || line.front() == '#') return;
    const auto f = split(line, ':');
    if (f.size() != 4 || f[0].empty()) return;
    GroupEntry g;
    if (!parse_id(f[2], g.gid)) return;
    g.name = f[0];
    if (!f[3].empty())
      for (auto m : split(f[3], ','))
        if (!trim(m).empty()) g.members.emplace_back(trim(m));
    out.push_back(std::move(g));
  });
  return out;
}

IniFile IniFile::parse(std::string_view text) {
  IniFile ini;
  std::string section;
  for_each_line(text, [&](std::string_view raw) {
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') return;
    if (line.front() == '[') {
      const size_t close = line.find(']');
      if (close != std::string_view::npos) section = lower(trim(line.substr(1, close - 1)));
      return;
    }
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) return;
    std::string_view value = trim(line.substr(eq + 1));
    // An inline comment starts at whitespace + '#' or ';' outside quotes.
    if (!value.empty() && value.front() == '"') {
      const size_t close = value.find('"', 1);
      if (close != std::string_view::npos) value = value.substr(0, close + 1);
    } else {
      for (size_t i = 1; i < value.size(); ++i) {
        if ((value[i] == '#' || value[i] == ';') && std::isspace(static_cast<unsigned char>(value[i - 1]))) {
          value = trim(value.substr(0, i));
          break;
        }
      }
    }
    ini.values_[{section, lower(trim(line.substr(0, eq)))}] = unquote(value);
  });
  return ini;
}

std::optional<std::string> IniFile::get(std::string_view section, std::string_view key) const {
  const auto it = values_.find({lower(section), lower(key)});
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

bool IniFile::get_bool(std::string_view section, std::string_view key, bool fallback) const {
  const auto v = get(section, key);
  if (!v) return fallback;
  const std::string l = lower(*v);
  if (l == "true" || l == "yes" || l == "on" || l == "1") return true;
  if (l == "false" || l == "no" || l == "off" || l == "0") return false;
  return fallback;
}

std::vector<std::string> parse_locale(std::string_view text) {
  std::vector<std::string> out;
  for_each_line(text, [&](std::string_view raw) {
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') return;
    if (line.starts_with("export ")) line = trim(line.substr(7));
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) return;
    const std::string_view name = line.substr(0, eq);
    if (name != "LANG" && name != "LANGUAGE" && !name.starts_with("LC_")) return;
    if (name.find_first_of(" \t") != std::string_view::npos) return;
    const std::string value = unquote(line.substr(eq + 1));
    if (value.empty()) return;
    env_set(out, std::string(name) + "=" + value);
  });
  return out;
}

std::optional<std::string> login_defs_path(std::string_view text, std::string_view key) {
  std::optional<std::string> found;
  for_each_line(text, [&](std::string_view raw) {
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') return;
    const size_t ws = line.find_first_of(" \t");
    if (ws == std::string_view::npos || line.substr(0, ws) != key) return;
    std::string_view v = trim(line.substr(ws));
    if (v.starts_with("PATH=")) v.remove_prefix(5);
    if (!v.empty()) found = std::string(v);
  });
  return found;
}

AccountFiles read_account_files(const std::string& root) {
  const std::string base = root == "/" ? "" : root;
  AccountFiles f;
  f.passwd = read_text_file(base + "/etc/passwd", &f.have_passwd);
  f.group = read_text_file(base + "/etc/group");
  f.wsl_conf = read_text_file(base + "/etc/wsl.conf");
  f.login_defs = read_text_file(base + "/etc/login.defs");
  bool have_locale = false;
  f.locale = read_text_file(base + "/etc/default/locale", &have_locale);
  if (!have_locale) f.locale = read_text_file(base + "/etc/locale.conf");
  return f;
}

std::string env_get(const std::vector<std::string>& env, std::string_view name) {
  for (const auto& e : env)
    if (e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=')
      return e.substr(name.size() + 1);
  return {};
}

bool env_has(const std::vector<std::string>& env, std::string_view name) {
  return std::any_of(env.begin(), env.end(), [&](const std::string& e) {
    return e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=';
  });
}

void env_set(std::vector<std::string>& env, std::string entry) {
  const size_t eq = entry.find('=');
  const std::string_view name = std::string_view(entry).substr(0, eq);
  for (auto& e : env) {
    if (e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=') {
      e = std::move(entry);
      return;
    }
  }
  env.push_back(std::move(entry));
}

std::optional<Launch> plan_launch(const Run& run, const AccountFiles& files,
                                  const std::function<bool(const std::string&)>& is_dir, std::string& error) {
  const IniFile wsl = IniFile::parse(files.wsl_conf);
  std::string want = run.user;
  std::string source = "requested";
  if (want.empty()) {
    if (auto d = wsl.get("user", "default"); d && !d->empty()) {
      want = *d;
      source = "the default user in /etc/wsl.conf ([user] default)";
    } else {
      want = "root";
      source = "the default";
    }
  }
  Launch l;
  if (!files.have_passwd) {
    // A minimal image without /etc/passwd: root only, as the agent always ran commands.
    if (want != "root" && want != "0") {
      error = "user '" + want + "' (" + source + ") does not exist: this guest has no /etc/passwd";
      return std::nullopt;
    }
    l.user = "root";
    l.home = "/root";
    l.shell = "/bin/sh";
    l.groups = {0};
  } else {
    const auto users = parse_passwd(files.passwd);
    auto it = std::find_if(users.begin(), users.end(), [&](const PasswdEntry& e) { return e.name == want; });
    uint32_t uid = 0;
    if (it == users.end() && parse_id(want, uid))
      it = std::find_if(users.begin(), users.end(), [&](const PasswdEntry& e) { return e.uid == uid; });
    if (it == users.end()) {
      error = "user '" + want + "' (" + source + ") does not exist in the guest's /etc/passwd";
      return std::nullopt;
    }
    l.user = it->name;
    l.uid = it->uid;
    l.gid = it->gid;
    l.home = it->home.empty() ? "/" : it->home;
    l.shell = it->shell.empty() ? "/bin/sh" : it->shell;
    l.groups.push_back(l.gid);
    for (const auto& g : parse_group(files.group)) {
      if (std::find(g.members.begin(), g.members.end(), l.user) != g.members.end() &&
          std::find(l.groups.begin(), l.groups.end(), g.gid) == l.groups.end())
        l.groups.push_back(g.gid);
    }
  }
  std::string path;
  if (auto p = login_defs_path(files.login_defs, l.uid == 0 ? "ENV_SUPATH" : "ENV_PATH")) {
    path = *p;
  } else {
    path = l.uid == 0 ? kRootPath : kUserPath;
  }
  l.env = {"HOME=" + l.home, "USER=" + l.user, "LOGNAME=" + l.user, "SHELL=" + l.shell, "PATH=" + path};
  for (auto& e : parse_locale(files.locale)) env_set(l.env, std::move(e));
  for (const auto& e : run.env) env_set(l.env, e);
  if (!run.cwd.empty()) {
    l.cwd = run.cwd;
  } else {
    l.cwd = is_dir(l.home) ? l.home : "/";
  }
  return l;
}

}  // namespace causeway::agent::guest
