// HostDnsWatch: follows the host's resolv.conf live, so the guest's DNS
// moves with the host's (a VPN connecting, a Wi-Fi change) within 1 s and
// with nothing for the guest to notice.
//
// Theory of operation
// -------------------
// Tools rarely rewrite resolv.conf in place. NetworkManager, resolvconf and
// VPN clients write a temporary file and rename() it over the old one; on
// systemd hosts /etc/resolv.conf is a symlink into /run/systemd/resolve/
// (retargeted when the mode changes, its target itself replaced by rename).
// A watch on the file's inode would go deaf after the first rename, so we
// watch DIRECTORIES with inotify(7): the directory of `path`, and the
// directory of every hop of its symlink chain (at most kMaxSymlinkHops),
// for events naming the file of that hop: IN_CLOSE_WRITE and IN_MODIFY
// (in-place rewrites), IN_MOVED_TO / IN_CREATE (rename-replace, a new
// symlink), IN_DELETE / IN_MOVED_FROM, and IN_ATTRIB. IN_Q_OVERFLOW counts
// as a change. The inotify fd is one Asio stream_descriptor (we own it).
//
// A relevant event arms a kDebounce timer (not re-armed by later events in
// the burst, so a change is seen at most kDebounce after its first event);
// when it fires we re-read the file, re-compute the symlink chain (the
// watches follow a retargeted link), and call on_change(config) if the
// parsed configuration differs from the current one.
//
// Failure policy: a file that cannot be read (a rm-then-create writer, a
// dangling link mid-update) keeps the previous configuration — the next
// event brings the new one; counted and logged. A missing file at start()
// means glibc's defaults (127.0.0.1) and is still watched for. Reading is a
// small synchronous read of a local file (≤ kMaxFileSize) on the engine
// thread. A writer that truncates, then pauses more than kDebounce before
// writing, can make us apply an empty file (127.0.0.1) briefly; its
// IN_CLOSE_WRITE corrects it.
//
// Not handled: the watched directories themselves being removed or
// replaced (inotify then reports IN_IGNORED and that hop goes deaf until
// the next event elsewhere re-computes the chain).
//
// Thread safety: confined to the executor of the io_context it was built on.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dns/host_config.hpp"

namespace causeway::dns {

struct HostDnsWatchStats {
  uint64_t events = 0;       // inotify events about a watched name
  uint64_t reloads = 0;      // re-reads of the file
  uint64_t changes = 0;      // on_change calls
  uint64_t read_errors = 0;  // re-reads that failed (previous config kept)
};

class HostDnsWatch {
 public:
  using ChangeHandler = std::function<void(const HostDnsConfig&)>;
  static constexpr auto kDebounce = std::chrono::milliseconds(100);  // bursts of writes settle well within this
  static constexpr size_t kMaxSymlinkHops = 8;                       // like a shell's loop guard; Linux allows 40
  static constexpr size_t kMaxFileSize = 64 * 1024;                  // bytes; resolv.conf is a few hundred

  HostDnsWatch(boost::asio::io_context& io, std::string path, ChangeHandler on_change);
  ~HostDnsWatch();
  HostDnsWatch(const HostDnsWatch&) = delete;
  HostDnsWatch& operator=(const HostDnsWatch&) = delete;

  // Reads the file once (current() is valid afterwards; on_change is not
  // called for it) and starts watching. Errors: inotify unavailable, or the
  // file's directory cannot be watched (does not exist, no permission).
  boost::system::error_code start();

  [[nodiscard]] const HostDnsConfig& current() const { return current_; }
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const HostDnsWatchStats& stats() const { return stats_; }

 private:
  void read_events();
  void on_event_bytes(size_t n);
  void schedule_reload();
  void reload();
  boost::system::error_code update_watches();
  bool read_file(std::string& text) const;

  boost::asio::io_context& io_;
  std::string path_;
  ChangeHandler on_change_;
  HostDnsConfig current_;
  HostDnsWatchStats stats_;
  boost::asio::posix::stream_descriptor inotify_;
  boost::asio::steady_timer debounce_;
  bool reload_armed_ = false;
  std::map<int, std::set<std::string>> watched_;  // watch descriptor -> file names of interest
  std::map<std::string, int> dir_wd_;             // directory -> watch descriptor
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(16 * 1024);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::dns
