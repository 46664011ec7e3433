// The distribution store: where causeway keeps its distributions' ext4 disk images and
// what it knows about each of them.
//
// Layout (DATA is Dirs::data, see default_dirs()):
//   DATA/distros/NAME/rootfs.ext4     the disk image (sparse; the VM's /dev/vda)
//   DATA/distros/NAME/distro.json     metadata: {"format":1,"name","source","created"}
//   DATA/distros/.partial-NAME-PID-…  a distribution being made (import/create); renamed to
//                                     NAME when complete, removed on failure. Never listed.
//   DATA/default                      the default distribution's name (one line)
//   RUNTIME/instances/NAME/lock       held (flock, exclusive) by a running VM of NAME
//
// A distribution exists exactly when DATA/distros/NAME is a directory: it appears in one
// rename(2) of its finished staging directory, so a crash never leaves a half-made NAME, and
// two imports of the same NAME race to one winner (the loser's rename fails with EEXIST).
// Staging directories of processes that no longer exist (a SIGKILL) are removed by the next
// reserve() (sweep_stale_partials).
//
// The store only reads and writes this layout; making an image (import.hpp, create.hpp) and
// reading one (export.hpp) are elsewhere.
//
// Thread safety: a Store holds no mutable state; concurrent processes are serialized by the
// rename described above, nothing else.
#pragma once

#include <sys/types.h>

#include <boost/system/result.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace causeway::distro {

struct Dirs {
  std::filesystem::path data;     // distros and the default (persistent)
  std::filesystem::path runtime;  // sockets and locks of running instances (tmpfs)
};

// CAUSEWAY_HOME=DIR (tests, CI isolation) → {DIR/data, DIR/run}; else root → {/var/lib/causeway,
// /run/causeway}; else {$XDG_DATA_HOME/causeway or ~/.local/share/causeway,
// $XDG_RUNTIME_DIR/causeway or /tmp/causeway-<uid>}. Creates nothing.
Dirs default_dirs();

// nullopt when `name` is a valid distribution name: 1–32 characters of [A-Za-z0-9._-], not
// starting with '.' or '-'; else a sentence saying why not.
std::optional<std::string> check_name(std::string_view name);

struct Distro {
  std::string name;
  std::filesystem::path dir;    // DATA/distros/NAME
  std::filesystem::path image;  // DATA/distros/NAME/rootfs.ext4
  uint64_t size_bytes = 0;      // the image's apparent size (the disk the VM sees)
  uint64_t disk_bytes = 0;      // what the sparse image occupies on the host
  std::string source;           // "import ubuntu.tar.gz", "mmdebstrap bookworm minbase"
  std::string created;          // UTC, ISO 8601 ("2026-12-07T10:11:12Z")
};

// The lock a running VM of `name` holds: RUNTIME/instances/NAME/lock.
std::filesystem::path instance_lock_path(const std::filesystem::path& runtime_dir, std::string_view name);
// True when some process holds that lock (a LOCK_EX|LOCK_NB attempt fails with EWOULDBLOCK).
bool instance_running(const std::filesystem::path& runtime_dir, std::string_view name);

// Owns a directory Store::reserve() made: removes it (and everything in it) when it goes out
// of scope, unless keep() says Store::commit() has renamed it into place.
class PartialDir {
 public:
  explicit PartialDir(std::filesystem::path dir) : dir_(std::move(dir)) {}
  ~PartialDir() {
    std::error_code ignored;
    if (!kept_) std::filesystem::remove_all(dir_, ignored);
  }
  PartialDir(const PartialDir&) = delete;
  PartialDir& operator=(const PartialDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return dir_; }
  void keep() { kept_ = true; }

 private:
  std::filesystem::path dir_;
  bool kept_ = false;
};

class Store {
 public:
  static constexpr const char* kImageFile = "rootfs.ext4";
  static constexpr const char* kMetadataFile = "distro.json";

  explicit Store(std::filesystem::path data_dir);

  [[nodiscard]] const std::filesystem::path& data_dir() const { return data_; }
  [[nodiscard]] std::filesystem::path distros_dir() const { return data_ / "distros"; }
  [[nodiscard]] std::filesystem::path dir_of(std::string_view name) const { return distros_dir() / std::string(name); }

  // Every distribution, sorted by name. A directory whose metadata is missing or unreadable
  // is still listed (source "unknown (no distro.json)"): it takes its name, and `remove` must
  // be able to get rid of it.
  [[nodiscard]] boost::system::result<std::vector<Distro>, std::string> list() const;
  // The distribution NAME; an error naming `causeway distro list` if there is none.
  [[nodiscard]] boost::system::result<Distro, std::string> find(std::string_view name) const;
  // The name in DATA/default, if that file exists and is not empty. (It may name a
  // distribution that was removed by hand: find() then says so.)
  [[nodiscard]] std::optional<std::string> default_name() const;
  // Makes NAME (which must exist) the default; atomic (write + rename).
  boost::system::result<void, std::string> set_default(std::string_view name);

  // ---- making a distribution ----
  // A fresh private (0700) staging directory DATA/distros/.partial-NAME-PID-XXXXXX for a
  // distribution NAME, after checking the name and that NAME does not exist yet. Creates
  // DATA/distros (0700 for a user, 0755 for root) if needed and removes stale partials.
  boost::system::result<std::filesystem::path, std::string> reserve(std::string_view name);
  // Writes `partial`/distro.json and renames `partial` to NAME (which must contain
  // rootfs.ext4). Fails with "already exists" if NAME appeared meanwhile. If no default is
  // set, NAME becomes the default (as the first distribution does in WSL).
  boost::system::result<Distro, std::string> commit(const std::filesystem::path& partial, std::string_view name,
                                                    std::string_view source);
  // Removes NAME's directory. If NAME was the default, the first remaining distribution (by
  // name) becomes the default, or none is. The caller checks that no VM of NAME is running
  // (instance_running).
  boost::system::result<void, std::string> remove(std::string_view name);

  // Removes staging directories whose process is gone. Returns how many it removed.
  size_t sweep_stale_partials() const;

 private:
  [[nodiscard]] Distro describe(const std::string& name) const;

  std::filesystem::path data_;
};

// Metadata codec (distro.json), exposed for tests: the JSON text for `d`, and `d` read back
// from it (name, source, created); an error for text that is not a distro.json.
std::string metadata_json(const Distro& d);
boost::system::result<Distro, std::string> parse_metadata(std::string_view text);

// Now, as the `created` field spells it.
std::string utc_timestamp_now();

}  // namespace causeway::distro
