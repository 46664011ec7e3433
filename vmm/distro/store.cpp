// The distribution store (store.hpp has the layout and the rules).
#include "vmm/distro/store.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "base/unique_fd.hpp"

namespace causeway::distro {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxNameLength = 32;
constexpr int kMetadataFormat = 1;
constexpr const char* kPartialPrefix = ".partial-";

std::string env_or_empty(const char* name) {
  const char* v = ::getenv(name);
  return v ? std::string(v) : std::string();
}

std::optional<std::string> read_small_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Writes `text` to `target` through a temporary file and rename(2), so a reader sees the old
// or the new content, never a torn one.
boost::system::result<void, std::string> write_atomically(const fs::path& target, std::string_view text) {
  fs::path tmp = target;
  tmp += ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return "cannot write " + tmp.string() + ": " + std::strerror(errno);
    }
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    return "cannot write " + target.string() + ": " + std::strerror(err);
  }
  return {};
}

// ".partial-NAME-PID-XXXXXX" → PID, or 0 when `file` is not a staging directory's name.
pid_t partial_owner(const std::string& file) {
  if (file.rfind(kPartialPrefix, 0) != 0) return 0;
  // NAME may contain '-', so read from the right: …-PID-XXXXXX.
  const auto last = file.rfind('-');
  if (last == std::string::npos || last == 0) return 0;
  const auto before = file.rfind('-', last - 1);
  if (before == std::string::npos) return 0;
  const std::string pid_text = file.substr(before + 1, last - before - 1);
  if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) return 0;
  return static_cast<pid_t>(std::stol(pid_text));
}

// Distro (an aggregate whose first member is a string) and path both convert from a string,
// so a bare string converts to both sides of result<Distro or path, string>: say which.
boost::system::result<Distro, std::string> distro_error(std::string why) {
  return {boost::system::in_place_error, std::move(why)};
}

boost::system::result<fs::path, std::string> path_error(std::string why) {
  return {boost::system::in_place_error, std::move(why)};
}

}  // namespace

Dirs default_dirs() {
  if (auto home = env_or_empty("CAUSEWAY_HOME"); !home.empty())
    return {fs::path(home) / "data", fs::path(home) / "run"};
  if (::geteuid() == 0) return {"/var/lib/causeway", "/run/causeway"};
  Dirs d;
  if (auto xdg = env_or_empty("XDG_DATA_HOME"); !xdg.empty() && xdg.front() == '/')
    d.data = fs::path(xdg) / "causeway";
  else
    d.data = fs::path(env_or_empty("HOME")) / ".local/share/causeway";
  if (auto xdg = env_or_empty("XDG_RUNTIME_DIR"); !xdg.empty() && xdg.front() == '/')
    d.runtime = fs::path(xdg) / "causeway";
  else
    d.runtime = "/tmp/causeway-" + std::to_string(::geteuid());
  return d;
}

std::optional<std::string> check_name(std::string_view name) {
  if (name.empty()) return "a distribution name cannot be empty";
  if (name.size() > kMaxNameLength)
    return "a distribution name has at most " + std::to_string(kMaxNameLength) + " characters ('" + std::string(name) +
           "' has " + std::to_string(name.size()) + ")";
  for (const char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok)
      return "'" + std::string(name) + "' is not a valid distribution name: use letters, digits, '.', '_' and '-'";
  }
  if (name.front() == '.' || name.front() == '-')
    return "'" + std::string(name) + "' is not a valid distribution name: it may not start with '.' or '-'";
  return std::nullopt;
}

fs::path instance_lock_path(const fs::path& runtime_dir, std::string_view name) {
  return runtime_dir / "instances" / std::string(name) / "lock";
}

bool instance_running(const fs::path& runtime_dir, std::string_view name) {
  const fs::path lock = instance_lock_path(runtime_dir, name);
  UniqueFd fd(::open(lock.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return false;  // no lock file: no instance
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
    ::flock(fd.get(), LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

std::string utc_timestamp_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string metadata_json(const Distro& d) {
  json j = {{"format", kMetadataFormat}, {"name", d.name}, {"source", d.source}, {"created", d.created}};
  return j.dump(2) + "\n";
}

boost::system::result<Distro, std::string> parse_metadata(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return distro_error("not JSON");
  if (!j.contains("format") || !j["format"].is_number_integer()) return distro_error("no \"format\"");
  if (j["format"].get<int>() != kMetadataFormat)
    return distro_error("format " + std::to_string(j["format"].get<int>()) + " (this causeway reads format " +
                        std::to_string(kMetadataFormat) + ")");
  Distro d;
  auto str = [&j](const char* key) { return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : ""; };
  d.name = str("name");
  d.source = str("source");
  d.created = str("created");
  return d;
}

Store::Store(fs::path data_dir) : data_(std::move(data_dir)) {}

Distro Store::describe(const std::string& name) const {
  Distro d;
  d.name = name;
  d.dir = dir_of(name);
  d.image = d.dir / kImageFile;
  struct stat st {};
  if (::stat(d.image.c_str(), &st) == 0) {
    d.size_bytes = static_cast<uint64_t>(st.st_size);
    d.disk_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  }
  auto text = read_small_file(d.dir / kMetadataFile);
  if (!text) {
    d.source = "unknown (no distro.json)";
    return d;
  }
  auto meta = parse_metadata(*text);
  if (meta.has_error()) {
    d.source = "unknown (distro.json: " + meta.error() + ")";
    return d;
  }
  d.source = meta->source;
  d.created = meta->created;
  return d;
}

boost::system::result<std::vector<Distro>, std::string> Store::list() const {
  std::vector<Distro> out;
  std::error_code ec;
  fs::directory_iterator it(distros_dir(), ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return out;
    return "cannot read " + distros_dir().string() + ": " + ec.message();
  }
  for (const auto& entry : it) {
    const std::string file = entry.path().filename().string();
    if (check_name(file) || !entry.is_directory(ec)) continue;  // staging dirs start with '.'
    out.push_back(describe(file));
  }
  std::sort(out.begin(), out.end(), [](const Distro& a, const Distro& b) { return a.name < b.name; });
  return out;
}

boost::system::result<Distro, std::string> Store::find(std::string_view name) const {
  if (auto bad = check_name(name)) return distro_error(*bad);
  std::error_code ec;
  if (!fs::is_directory(dir_of(name), ec))
    return distro_error(
        "no distribution named '" + std::string(name) +
        "' (see `causeway distro list`; make one with `causeway distro create` or `causeway distro import`)");
  return describe(std::string(name));
}

std::optional<std::string> Store::default_name() const {
  auto text = read_small_file(data_ / "default");
  if (!text) return std::nullopt;
  std::string name = *text;
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  if (name.empty()) return std::nullopt;
  return name;
}

boost::system::result<void, std::string> Store::set_default(std::string_view name) {
  auto d = find(name);
  if (d.has_error()) return d.error();
  return write_atomically(data_ / "default", std::string(name) + "\n");
}

boost::system::result<fs::path, std::string> Store::reserve(std::string_view name) {
  if (auto bad = check_name(name)) return path_error(*bad);
  std::error_code ec;
  if (fs::exists(dir_of(name), ec))
    return path_error("a distribution named '" + std::string(name) +
                      "' already exists (remove it first with `causeway distro remove " + std::string(name) +
                      "`, or choose another name)");
  const mode_t dir_mode = ::geteuid() == 0 ? 0755 : 0700;
  for (const fs::path& p : {data_, distros_dir()}) {
    if (::mkdir(p.c_str(), dir_mode) != 0 && errno != EEXIST) {
      // A missing parent (~/.local/share): create the chain, then the mode of the leaf.
      fs::create_directories(p, ec);
      if (ec) return path_error("cannot create " + p.string() + ": " + ec.message());
    }
  }
  sweep_stale_partials();
  std::string tmpl =
      (distros_dir() / (kPartialPrefix + std::string(name) + "-" + std::to_string(::getpid()) + "-XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr)
    return path_error("cannot create a staging directory in " + distros_dir().string() + ": " + std::strerror(errno));
  return {boost::system::in_place_value, fs::path(tmpl)};
}

boost::system::result<Distro, std::string> Store::commit(const fs::path& partial, std::string_view name,
                                                         std::string_view source) {
  Distro d;
  d.name = std::string(name);
  d.source = std::string(source);
  d.created = utc_timestamp_now();
  if (auto w = write_atomically(partial / kMetadataFile, metadata_json(d)); w.has_error())
    return distro_error(w.error());
  // 0755 for the finished directory of root's store (readable like /var/lib/*); a user's
  // keeps 0700 from mkdtemp.
  if (::geteuid() == 0) ::chmod(partial.c_str(), 0755);
  const fs::path target = dir_of(name);
  // rename(2) onto an existing empty directory would succeed: refuse any existing target
  // first, then rely on rename's ENOTEMPTY/EEXIST for a race with a non-empty one.
  std::error_code ec;
  if (fs::exists(target, ec) || ::rename(partial.c_str(), target.c_str()) != 0) {
    const int err = errno;
    if (fs::exists(target, ec) || err == EEXIST || err == ENOTEMPTY)
      return distro_error("a distribution named '" + std::string(name) + "' appeared while this one was being made");
    return distro_error("cannot rename " + partial.string() + " to " + target.string() + ": " + std::strerror(err));
  }
  if (!default_name()) (void)set_default(name);
  return describe(d.name);
}

boost::system::result<void, std::string> Store::remove(std::string_view name) {
  auto d = find(name);
  if (d.has_error()) return d.error();
  // Rename first (one atomic step: the name is free at once, and a failure half-way through
  // the removal leaves a staging directory that sweep_stale_partials finishes), then delete.
  const fs::path doomed =
      distros_dir() / (kPartialPrefix + std::string(name) + "-" + std::to_string(::getpid()) + "-removing");
  std::error_code ec;
  fs::remove_all(doomed, ec);
  if (::rename(d->dir.c_str(), doomed.c_str()) != 0)
    return "cannot remove " + d->dir.string() + ": " + std::strerror(errno);
  fs::remove_all(doomed, ec);
  if (ec) return "removed '" + std::string(name) + "', but could not delete " + doomed.string() + ": " + ec.message();
  if (default_name() == name) {
    // As WSL does: another distribution (the first by name) becomes the default, if any.
    fs::remove(data_ / "default", ec);
    auto rest = list();
    if (rest.has_value() && !rest->empty()) (void)set_default(rest->front().name);
  }
  return {};
}

size_t Store::sweep_stale_partials() const {
  size_t removed = 0;
  std::error_code ec;
  fs::directory_iterator it(distros_dir(), ec);
  if (ec) return 0;
  for (const auto& entry : it) {
    const pid_t owner = partial_owner(entry.path().filename().string());
    if (owner <= 0) continue;
    if (::kill(owner, 0) == 0 || errno == EPERM) continue;  // still alive (EPERM: someone else's)
    std::error_code rm;
    fs::remove_all(entry.path(), rm);
    if (!rm) ++removed;
  }
  return removed;
}

}  // namespace causeway::distro
