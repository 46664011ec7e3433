#include "dns/host_dns_watch.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/unique_fd.hpp"

namespace causeway::dns {
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kDirMask =
    IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_ONLYDIR;

boost::system::error_code errno_code(int e) { return {e, boost::system::system_category()}; }

// `path` and the files its symlinks lead to, in order (lexical paths).
std::vector<fs::path> symlink_chain(const fs::path& path, size_t max_hops) {
  std::vector<fs::path> chain{path.lexically_normal()};
  for (size_t i = 0; i < max_hops; ++i) {
    std::error_code ec;
    const fs::path& last = chain.back();
    if (!fs::is_symlink(fs::symlink_status(last, ec)) || ec) break;
    fs::path target = fs::read_symlink(last, ec);
    if (ec) break;
    if (target.is_relative()) target = last.parent_path() / target;
    chain.push_back(target.lexically_normal());
  }
  return chain;
}

}  // namespace

HostDnsWatch::HostDnsWatch(asio::io_context& io, std::string path, ChangeHandler on_change)
    : io_(io), path_(std::move(path)), on_change_(std::move(on_change)), inotify_(io), debounce_(io) {}

HostDnsWatch::~HostDnsWatch() {
  *alive_ = false;
  debounce_.cancel();
  boost::system::error_code ec;
  inotify_.close(ec);  // ours: closing it drops every watch
}

boost::system::error_code HostDnsWatch::start() {
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd) {
    const int e = errno;
    spdlog::error("dns: inotify_init1 failed ({}): check fs.inotify.max_user_instances", std::strerror(e));
    return errno_code(e);
  }
  boost::system::error_code ec;
  inotify_.assign(fd.release(), ec);
  if (ec) return ec;
  if (auto werr = update_watches()) return werr;
  std::string text;
  if (read_file(text)) {
    current_ = parse_resolv_conf(text);
  } else {
    const int e = errno;
    current_ = parse_resolv_conf("");  // glibc's defaults
    spdlog::warn("dns: cannot read {} ({}); using 127.0.0.1 until it appears", path_, std::strerror(e));
  }
  read_events();
  return {};
}

boost::system::error_code HostDnsWatch::update_watches() {
  std::map<std::string, std::set<std::string>> wanted;  // directory -> names
  for (const fs::path& p : symlink_chain(fs::path(path_), kMaxSymlinkHops)) {
    fs::path dir = p.parent_path();
    if (dir.empty()) dir = ".";
    wanted[dir.string()].insert(p.filename().string());
  }
  boost::system::error_code first_error;
  std::map<int, std::set<std::string>> watched;
  std::map<std::string, int> dir_wd;
  for (auto& [dir, names] : wanted) {
    // Adding a watch on an already-watched directory returns the same wd.
    const int wd = ::inotify_add_watch(inotify_.native_handle(), dir.c_str(), kDirMask);
    if (wd < 0) {
      const int e = errno;
      spdlog::warn("dns: cannot watch {} for changes to {}: {}", dir, path_, std::strerror(e));
      if (!first_error) first_error = errno_code(e);
      continue;
    }
    watched[wd].insert(names.begin(), names.end());
    dir_wd[dir] = wd;
  }
  for (const auto& [dir, wd] : dir_wd_) {
    // (Two paths to one directory share a wd: keep it while either is wanted.)
    if (!dir_wd.contains(dir) && !watched.contains(wd)) ::inotify_rm_watch(inotify_.native_handle(), wd);
  }
  watched_ = std::move(watched);
  dir_wd_ = std::move(dir_wd);
  // Only the first directory (the one `path` is in) is essential.
  const fs::path first_dir = fs::path(path_).lexically_normal().parent_path();
  const std::string key = first_dir.empty() ? std::string(".") : first_dir.string();
  return dir_wd_.contains(key) ? boost::system::error_code{} : first_error;
}

bool HostDnsWatch::read_file(std::string& text) const {
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  text.clear();
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    text.append(chunk, static_cast<size_t>(n));
    if (text.size() >= kMaxFileSize) {
      text.resize(kMaxFileSize);  // a resolv.conf this big is garbage past here
      break;
    }
  }
  return true;
}

void HostDnsWatch::read_events() {
  inotify_.async_read_some(
      asio::buffer(buf_), [this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec, size_t n) {
        const auto a = alive.lock();
        if (!a || !*a || ec == asio::error::operation_aborted) return;
        if (ec) {
          spdlog::error("dns: reading inotify events for {} failed: {}; no longer following it", path_, ec.message());
          return;
        }
        on_event_bytes(n);
        read_events();
      });
}

void HostDnsWatch::on_event_bytes(size_t n) {
  bool relevant = false;
  size_t off = 0;
  while (n - off >= sizeof(inotify_event)) {
    inotify_event ev{};
    std::memcpy(&ev, buf_.data() + off, sizeof ev);  // the buffer is bytes, not aligned events
    if (n - off - sizeof ev < ev.len) break;
    std::string name;
    if (ev.len > 0) {
      // SAFETY: ev.len bytes follow the header (checked above); the kernel
      // NUL-pads the name, strnlen stops at the first NUL within ev.len.
      const char* p = reinterpret_cast<const char*>(buf_.data() + off + sizeof ev);
      name.assign(p, ::strnlen(p, ev.len));
    }
    off += sizeof ev + ev.len;
    if (ev.mask & IN_Q_OVERFLOW) {
      relevant = true;
      continue;
    }
    auto it = watched_.find(ev.wd);
    if (it != watched_.end() && it->second.contains(name)) {
      ++stats_.events;
      relevant = true;
    }
  }
  if (relevant) schedule_reload();
}

void HostDnsWatch::schedule_reload() {
  if (reload_armed_) return;
  reload_armed_ = true;
  debounce_.expires_after(kDebounce);
  debounce_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
    const auto a = alive.lock();
    if (!a || !*a || ec) return;
    reload_armed_ = false;
    reload();
  });
}

void HostDnsWatch::reload() {
  ++stats_.reloads;
  (void)update_watches();  // the link may point elsewhere now
  std::string text;
  if (!read_file(text)) {
    const int e = errno;
    ++stats_.read_errors;
    spdlog::warn("dns: cannot read {} ({}); keeping the previous DNS servers", path_, std::strerror(e));
    return;
  }
  HostDnsConfig cfg = parse_resolv_conf(text);
  if (cfg == current_) return;
  current_ = std::move(cfg);
  ++stats_.changes;
  std::string servers;
  for (const DnsServer& s : current_.servers) servers += (servers.empty() ? "" : ", ") + s.to_string();
  spdlog::info("dns: {} changed; servers now {}", path_, servers);
  if (on_change_) on_change_(current_);
}

}  // namespace causeway::dns
