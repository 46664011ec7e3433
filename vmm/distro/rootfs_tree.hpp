// RootfsTree: what a root filesystem tarball says, entry by entry, before it becomes an
// ext4 image — the sans-I/O half of `causeway distro import`.
//
// The importer (import.cpp) reads the tarball with libarchive and hands every member to
// add(); the tree answers what to do in the staging directory (nothing, or first remove the
// old path), and keeps each path's kind, owner, mode, mtime, device numbers, link target and
// xattrs for the step that writes them into the image.
//
// Rules (tar semantics where they are safe):
//   - Member names are normalized: leading "./" and "/"-runs collapse, "." components go;
//     ".." components and absolute names are refused (path traversal), as is a name with a
//     NUL or an empty one after normalization other than the root ("./").
//   - A later member of the same path replaces the earlier one; a directory member for an
//     existing directory only updates its metadata (its children stay).
//   - A member below a path that the tarball made something other than a directory (a
//     symlink "etc -> /" and then "etc/passwd") is refused: following it would write
//     outside the tree.
//   - Parents a tarball never lists are made as 0755 root:root directories with mtime `now`.
//   - A hard link names an earlier non-directory member; a link to a link resolves to the
//     first one.
// Limits: one map entry per path (a few hundred bytes each: a 100 000-file tarball is tens
// of MB); sockets in tarballs are skipped by the importer.
//
// Thread safety: none needed (plain value type).
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "vmm/distro/ext4_image.hpp"

namespace causeway::distro {

enum class EntryKind { Directory, Regular, Symlink, HardLink, CharDevice, BlockDevice, Fifo };

struct TreeEntry {
  EntryKind kind = EntryKind::Regular;
  uint32_t perm = 0644;  // permission bits incl. setuid/setgid/sticky (07777)
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint32_t major = 0, minor = 0;  // devices
  std::string target{};           // symlink: its text; hard link: the normalized path it names
  Xattrs xattrs{};
  bool implicit = false;  // a parent directory the tarball never listed
  uint64_t size = 0;      // regular files: bytes

  // The inode mode (type | perm) of this entry; a hard link has none of its own.
  [[nodiscard]] uint32_t mode() const;
};

// "./usr//bin/" → "usr/bin", "." and "./" → "" (the root); an error for traversal, absolute
// names, and empty or NUL-containing ones.
boost::system::result<std::string, std::string> normalize_member_name(std::string_view raw);

class RootfsTree {
 public:
  explicit RootfsTree(int64_t now);

  // What the staging tree must do before it writes this member.
  struct Step {
    bool remove_existing = false;     // unlink the path (recursively if it was a directory)
    bool write = true;                // create it (false: an existing directory, metadata only)
    std::vector<std::string> mkdirs;  // parents to create first, outermost first
    std::string link_to;              // hard links: the (resolved) path to link to
    bool link_to_node = false;        // ... which is a device or fifo (made in the image, not staged)
  };
  // Records `entry` at `path` (already normalized). An error says why the member is refused.
  boost::system::result<Step, std::string> add(const std::string& path, TreeEntry entry);

  [[nodiscard]] const std::map<std::string, TreeEntry>& entries() const { return entries_; }
  [[nodiscard]] size_t size() const { return entries_.size(); }

  // nullopt when the tree looks like a root filesystem (an /etc directory, and /bin or
  // /usr/bin); else what is missing, with a hint when everything sits under one folder.
  [[nodiscard]] std::optional<std::string> not_a_rootfs() const;

 private:
  std::map<std::string, TreeEntry> entries_;  // "" is the root directory
  int64_t now_;
};

}  // namespace causeway::distro
