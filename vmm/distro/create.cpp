// create_debian (create.hpp has the theory of operation).
#include "vmm/distro/create.hpp"

#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "vmm/distro/process.hpp"

namespace causeway::distro {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDefaultMirror = "http://deb.debian.org/debian";
constexpr const char* kSecurityMirror = "http://security.debian.org/debian-security";
constexpr size_t kMaxUserName = 32;

template <class T>
boost::system::result<T, std::string> fail(std::string why) {
  return {boost::system::in_place_error, std::move(why)};
}

// Codenames and aliases with -updates and -security suites.
bool has_security_suite(const std::string& suite) {
  static const std::set<std::string> kStable = {"bullseye", "bookworm", "trixie", "stable", "oldstable"};
  return kStable.count(suite) > 0;
}

// Does /etc/subuid (or subgid) give `user` (name or uid) a range?
bool has_subordinate_ids(const char* file, const std::string& user, uid_t uid) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string who = line.substr(0, colon);
    if (who == user || who == std::to_string(uid)) return true;
  }
  return false;
}

std::string tail_lines(const std::string& text, size_t n) {
  size_t pos = text.size();
  while (pos > 0 && (text[pos - 1] == '\n')) --pos;
  size_t start = pos;
  for (size_t seen = 0; start > 0; --start) {
    if (text[start - 1] == '\n' && ++seen == n) break;
  }
  return text.substr(start, pos - start);
}

}  // namespace

std::optional<std::string> check_user_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxUserName)
    return "a user name has 1 to " + std::to_string(kMaxUserName) + " characters";
  if (!(name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z')))
    return "'" + std::string(name) + "' is not a user name: it must start with a lowercase letter or '_'";
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return "'" + std::string(name) + "' is not a user name: use lowercase letters, digits, '_' and '-'";
  if (name == "root") return std::string("root exists already: --user names an extra user");
  return std::nullopt;
}

std::vector<std::string> mmdebstrap_argv(const CreateOptions& o, const std::string& out_tar, bool as_root) {
  std::vector<std::string> argv = {"mmdebstrap", "--variant=" + o.variant, as_root ? "--mode=root" : "--mode=unshare",
                                   "--format=tar"};
  std::vector<std::string> include = o.include;
  if (!o.user.empty()) include.emplace_back("passwd");  // useradd (in minbase already; not in apt)
  if (!include.empty()) {
    std::string joined;
    for (const auto& p : include) joined += (joined.empty() ? "" : ",") + p;
    argv.push_back("--include=" + joined);
  }
  argv.emplace_back("--customize-hook=echo LANG=C.UTF-8 > \"$1/etc/default/locale\"");
  if (!o.user.empty()) {
    // The name was checked (check_user_name): safe inside the shell words below.
    const std::string& u = o.user;
    argv.push_back("--customize-hook=chroot \"$1\" useradd -m -s /bin/bash " + u);
    argv.push_back(
        "--customize-hook=if chroot \"$1\" getent group sudo >/dev/null; then chroot \"$1\" usermod -aG sudo " + u +
        "; fi");
    argv.push_back("--customize-hook=if [ -d \"$1/etc/sudoers.d\" ]; then echo '" + u +
                   " ALL=(ALL) NOPASSWD:ALL' > \"$1/etc/sudoers.d/causeway-" + u +
                   "\"; chmod 0440 \"$1/etc/sudoers.d/causeway-" + u + "\"; fi");
    argv.push_back("--customize-hook=printf '[user]\\ndefault=" + u + "\\n' >> \"$1/etc/wsl.conf\"");
  }
  argv.push_back(o.suite);
  argv.push_back(out_tar);
  const std::string mirror = o.mirror.empty() ? kDefaultMirror : o.mirror;
  argv.push_back("deb " + mirror + " " + o.suite + " main");
  if (o.mirror.empty() && has_security_suite(o.suite)) {
    argv.push_back("deb " + mirror + " " + o.suite + "-updates main");
    argv.push_back("deb " + std::string(kSecurityMirror) + " " + o.suite + "-security main");
  }
  return argv;
}

std::optional<std::string> check_unshare_prerequisites() {
  const uid_t uid = ::getuid();
  const passwd* pw = ::getpwuid(uid);
  const std::string user = pw ? pw->pw_name : std::to_string(uid);
  std::string missing;
  if (!has_subordinate_ids("/etc/subuid", user, uid)) missing = "/etc/subuid";
  if (!has_subordinate_ids("/etc/subgid", user, uid))
    missing += std::string(missing.empty() ? "" : " and ") + "/etc/subgid";
  if (!missing.empty())
    return "mmdebstrap --mode=unshare (used without root) needs subordinate IDs for user '" + user + "', and " +
           missing + (missing.find(" and ") != std::string::npos ? " have" : " has") +
           " none: as root, run usermod --add-subuids 100000-165535 --add-subgids 100000-165535 " + user +
           " (or run causeway distro create as root)";
  if (!find_tool("newuidmap") || !find_tool("newgidmap"))
    return std::string("mmdebstrap --mode=unshare needs newuidmap and newgidmap: apt-get install uidmap");
  return std::nullopt;
}

boost::system::result<Imported, std::string> create_debian(Store& store, std::string_view name,
                                                           const CreateOptions& options) {
  if (auto bad = check_name(name)) return fail<Imported>(*bad);
  if (!options.user.empty())
    if (auto bad = check_user_name(options.user)) return fail<Imported>("--user: " + *bad);
  if (!find_tool("mmdebstrap")) return fail<Imported>("mmdebstrap not found: apt-get install mmdebstrap");
  if (!find_tool("mkfs.ext4")) return fail<Imported>("mkfs.ext4 not found: apt-get install e2fsprogs");
  const bool as_root = ::geteuid() == 0;
  if (!as_root)
    if (auto why = check_unshare_prerequisites()) return fail<Imported>(*why);
  auto partial = store.reserve(name);
  if (partial.has_error()) return fail<Imported>(partial.error());
  PartialDir cleanup(*partial);  // removed however we leave, unless committed

  const fs::path tar = *partial / "bootstrap.tar";
  const auto argv = mmdebstrap_argv(options, tar.string(), as_root);
  const ProgressFn& progress = options.import.progress;
  auto run = run_tool(
      argv,
      [&progress](const std::string& line) {
        if (progress) progress(Progress{Progress::Phase::Download, 0, 0, 0, -1, line});
      },
      options.import.cancel);
  if (run.has_error()) return fail<Imported>(run.error());
  if (!run->success())
    return fail<Imported>("mmdebstrap " + run->describe() + "; its last words:\n" + tail_lines(run->output, 8));

  auto report = build_image(tar, *partial, *partial / Store::kImageFile, name, options.import);
  std::error_code ec;
  fs::remove(tar, ec);
  if (report.has_error()) return fail<Imported>(report.error());
  std::string source = "mmdebstrap " + options.suite + " " + options.variant;
  for (size_t i = 0; i < options.include.size(); ++i) source += (i == 0 ? " +" : ",") + options.include[i];
  if (!options.user.empty()) source += " user " + options.user;
  auto d = store.commit(*partial, name, source);
  if (d.has_error()) return fail<Imported>(d.error());
  cleanup.keep();
  return Imported{*d, *report};
}

}  // namespace causeway::distro
