// `causeway distro import`: a root filesystem tarball → an ext4 disk image, without root.
//
// Pipeline (all of it inside the store's private staging directory, so a failure or an
// interrupt at any point removes everything by removing that one directory):
//   1. unpack   libarchive reads the tarball (tar/pax/GNU/ustar; gzip, xz, zstd, bzip2, …
//               detected from the content). Each member goes through RootfsTree (name
//               checks, traversal, replacement) and, if it has a body in a staging tree,
//               into STAGING/tree: directories (0700), regular files (0600, sparse regions
//               kept), symlinks and hard links. Owners, modes, times, xattrs, device nodes
//               and fifos are only recorded: an unprivileged process cannot make them.
//   2. check    the tree must look like a root filesystem (RootfsTree::not_a_rootfs); the
//               image size must hold the data; the disk must have room for it.
//   3. mkfs     `mkfs.ext4 -q -F -d TREE -E root_owner=0:0,lazy_itable_init=1,
//               lazy_journal_init=1 -L NAME IMAGE SIZE` packs the tree into a sparse image
//               (e2fsprogs ≥ 1.43 copies data, symlinks and hard links from -d). The lazy
//               options keep a fresh 16 GiB image at a few MB plus its data: the inode
//               tables and journal are holes, which read as the zeros they would be written
//               as. (A guest that mounts with `noinit_itable` never fills them in.)
//   4. metadata the staging tree is deleted, then Ext4Image (libext2fs) makes the device
//               nodes and fifos and sets every inode's mode, owner, mtime and xattrs to what
//               the tarball said.
//   5. commit   Store::commit renames the staging directory to NAME.
//
// Not kept: POSIX ACLs stored as tar ACL records (GNU tar --acls; counted in warnings),
// sockets (tar cannot hold them anyway), atime/ctime (set to the mtime / now).
//
// Thread safety: one import per call; blocks the calling thread.
#pragma once

#include <atomic>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/distro/store.hpp"

namespace causeway::distro {

constexpr uint64_t kDefaultImageSize = 16ull << 30;  // sparse: costs only what is written
constexpr uint64_t kMinImageSize = 64ull << 20;

// "16G", "512M", "1.5T", "4096K", "1073741824" (bytes); K/M/G/T are binary (KiB …), an
// optional trailing "B"/"iB" is accepted. An error for anything else or below kMinImageSize.
boost::system::result<uint64_t, std::string> parse_size(std::string_view text);
// 1536 MiB → "1.5 GiB".
std::string format_bytes(uint64_t bytes);

struct Progress {
  enum class Phase { Download, Unpack, Mkfs, Metadata, Export } phase = Phase::Unpack;
  uint64_t entries = 0;        // unpack / metadata / export: members handled so far
  uint64_t total_entries = 0;  // metadata: of how many (0: unknown)
  uint64_t bytes = 0;          // unpack / export: file data so far
  int percent = -1;            // unpack: share of the (compressed) tarball read; -1 unknown
  std::string message;         // download: the tool's last line
};
using ProgressFn = std::function<void(const Progress&)>;

struct ImportOptions {
  uint64_t size_bytes = kDefaultImageSize;
  std::string source;  // for distro.json; empty: "import <tarball file name>"
  ProgressFn progress;
  const std::atomic<bool>* cancel = nullptr;  // set (e.g. by a SIGINT handler) to stop
};

struct ImportReport {
  uint64_t entries = 0;     // members in the tree (including parents it never listed)
  uint64_t data_bytes = 0;  // regular file data
  std::chrono::milliseconds unpack{0}, mkfs{0}, metadata{0};
  std::vector<std::string> warnings;  // things not kept (ACLs, sockets), one line each
};

// Steps 1–4 above: `tarball` → `image` (which must not exist), using `work_dir` (existing,
// private) for the staging tree. Leaves `image` complete, or no `image` and an error.
boost::system::result<ImportReport, std::string> build_image(const std::filesystem::path& tarball,
                                                             const std::filesystem::path& work_dir,
                                                             const std::filesystem::path& image, std::string_view label,
                                                             const ImportOptions& options);

// The whole import: reserve NAME in the store, build_image into it, commit. The Distro as
// listed, and the report.
struct Imported {
  Distro distro;
  ImportReport report;
};
boost::system::result<Imported, std::string> import_tarball(Store& store, std::string_view name,
                                                            const std::filesystem::path& tarball,
                                                            const ImportOptions& options);

}  // namespace causeway::distro
