// Who a command runs as, and with what environment: the guest agent's own
// reading of a distribution's /etc/passwd, /etc/group, /etc/wsl.conf,
// /etc/login.defs and /etc/default/locale.
//
// Why not getpwnam(3): the agent is a static binary, and glibc's NSS does not
// work in one (it dlopen()s libnss_*.so of another glibc). So the files are
// parsed here — the "files" NSS source only; users that live in LDAP or
// systemd-homed are not found (a clear error says which user).
//
// What a command gets (plan_launch), as Debian's login(1) would give it:
//   user      Run.user; "" = /etc/wsl.conf [user] default=NAME; else root. A name, or a
//             numeric uid that no name matches.
//   identity  the passwd entry's uid and gid; supplementary groups = every group of
//             /etc/group that lists the user, plus the primary group
//   env       HOME, USER, LOGNAME, SHELL (from passwd; SHELL /bin/sh if empty),
//             PATH (login.defs ENV_SUPATH for uid 0, ENV_PATH otherwise; Debian's
//             defaults when absent), LANG/LANGUAGE/LC_* from /etc/default/locale
//             (else /etc/locale.conf); then every Run.env entry, which overrides a
//             computed one of the same name
//   cwd       Run.cwd if given; else the home directory if it exists; else /
// No /etc/passwd at all (a minimal image): root runs with HOME=/root, as before v3.
//
// The parsers are pure (text in, values out) and forgiving: a malformed line
// is skipped, never an error — a distribution's files are the user's, not ours
// to reject. read_account_files() is the only I/O.
//
// Thread safety: pure functions; no state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vmm/agent/protocol.hpp"

namespace causeway::agent::guest {

// Debian's login.defs defaults (ENV_SUPATH / ENV_PATH).
constexpr std::string_view kRootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::string_view kUserPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0, gid = 0;
  std::string gecos, home, shell;
};
struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

// passwd(5): name:password:uid:gid:gecos:home:shell. Comments (#) and malformed lines are skipped.
std::vector<PasswdEntry> parse_passwd(std::string_view text);
// group(5): name:password:gid:member,member
std::vector<GroupEntry> parse_group(std::string_view text);

// An INI file as wsl.conf is written: [section], key = value, '#' or ';' comments (whole
// lines, or after whitespace), values optionally in double quotes. Section and key names
// are matched case-insensitively; the last assignment wins.
class IniFile {
 public:
  static IniFile parse(std::string_view text);
  [[nodiscard]] std::optional<std::string> get(std::string_view section, std::string_view key) const;
  // true/false/yes/no/on/off/1/0 (any case); `fallback` when absent or anything else.
  [[nodiscard]] bool get_bool(std::string_view section, std::string_view key, bool fallback) const;

 private:
  std::map<std::pair<std::string, std::string>, std::string> values_;
};

// /etc/default/locale or /etc/locale.conf: NAME=value lines (value optionally quoted);
// only LANG, LANGUAGE and LC_* are kept, as "NAME=value".
std::vector<std::string> parse_locale(std::string_view text);
// /etc/login.defs: the value of `key` (ENV_PATH, ENV_SUPATH) with a "PATH=" prefix removed;
// nullopt when absent.
std::optional<std::string> login_defs_path(std::string_view text, std::string_view key);

// The text of the files plan_launch reads; "" for a file that is absent.
struct AccountFiles {
  bool have_passwd = false;
  std::string passwd, group, wsl_conf, login_defs, locale;
};
// Reads them below `root` ("/" in the guest; a test directory on a host).
AccountFiles read_account_files(const std::string& root);
// A whole (small) file: at most 4 MiB; "" when absent (`present` says which).
std::string read_text_file(const std::string& path, bool* present = nullptr);

struct Launch {
  std::string user;  // the resolved name ("root" for the no-passwd fallback)
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;  // supplementary, primary included
  std::string home, shell;
  std::vector<std::string> env;  // the whole environment, "NAME=value"
  std::string cwd;
};

// The plan for `run`, or nullopt with `error` saying which user is unknown (and where the
// name came from). `is_dir(path)` decides whether the home directory can be the cwd.
std::optional<Launch> plan_launch(const Run& run, const AccountFiles& files,
                                  const std::function<bool(const std::string&)>& is_dir, std::string& error);

// "NAME=value" list helpers: the value of NAME ("" when absent), and set-or-replace.
std::string env_get(const std::vector<std::string>& env, std::string_view name);
bool env_has(const std::vector<std::string>& env, std::string_view name);
void env_set(std::vector<std::string>& env, std::string entry);

}  // namespace causeway::agent::guest
