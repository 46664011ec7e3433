// Ext4Image: an ext4 image file opened with libext2fs (e2fsprogs' library), for the two
// things causeway does to a distribution's disk without root and without booting it:
//   - import: after `mkfs.ext4 -d` has packed the file data, set each inode's owner, mode,
//     times and extended attributes as the tarball says, and make the device nodes and
//     fifos that an unprivileged process cannot make in a staging tree (set_attrs,
//     set_xattrs, make_node, add_link);
//   - export: walk the tree and read every inode, symlink, xattr and file (read_inode,
//     list_dir, read_symlink, xattrs, read_file).
//
// Why libext2fs rather than a `debugfs -w -f SCRIPT`: file names travel as bytes (no
// quoting rules; a name with a newline or a quote is fine), binary xattr values need no
// temporary files, times keep their nanoseconds, and every failure comes back as an error
// code on the call that caused it instead of a line in debugfs's output.
//
// Times use ext4's encoding (Documentation/filesystems/ext4/inodes.rst, "Inode Timestamps"):
// 32 signed bits of seconds in i_Xtime, and in i_Xtime_extra two epoch bits (seconds bits 32
// and 33) plus nanoseconds << 2.
//
// POSIX ACL xattrs (system.posix_acl_access/default) go through libext2fs's translation
// between the Linux xattr format and ext4's on-disk one, as the kernel would.
//
// Thread safety: one thread at a time (libext2fs handles are not thread-safe).
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace causeway::distro {

using Xattrs = std::vector<std::pair<std::string, std::string>>;  // name → value (bytes)

struct InodeAttrs {
  uint32_t mode = 0;  // type and permission bits (S_IFREG | 04755 …)
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 0;  // seconds since the epoch
  uint32_t mtime_nsec = 0;
};

struct InodeInfo {
  InodeAttrs attrs;
  uint64_t size = 0;
  uint32_t links = 0;
  uint32_t rdev_major = 0, rdev_minor = 0;  // character and block devices
};

struct DirEntry {
  std::string name;
  uint32_t ino = 0;
};

class Ext4Image {
 public:
  static boost::system::result<std::unique_ptr<Ext4Image>, std::string> open(const std::filesystem::path& image,
                                                                             bool writable);
  ~Ext4Image();  // closes without reporting errors: call close() to know
  Ext4Image(const Ext4Image&) = delete;
  Ext4Image& operator=(const Ext4Image&) = delete;

  // Writes everything back (for a writable image) and releases the handle.
  boost::system::result<void, std::string> close();

  // The inode of `path` relative to the root ("" is the root itself); symlinks in the last
  // component are not followed.
  boost::system::result<uint32_t, std::string> lookup(std::string_view path);

  // ---- writing ----
  boost::system::result<void, std::string> set_attrs(uint32_t ino, const InodeAttrs& a);
  // Sets these xattrs (others the inode has stay).
  boost::system::result<void, std::string> set_xattrs(uint32_t ino, const Xattrs& xattrs);
  // A new character/block device or fifo `name` in directory `dir` (mode carries the type).
  boost::system::result<uint32_t, std::string> make_node(uint32_t dir, std::string_view name, uint32_t mode,
                                                         uint32_t major, uint32_t minor);
  // Another name for the non-directory inode `ino` (a hard link): links_count + 1.
  boost::system::result<void, std::string> add_link(uint32_t dir, std::string_view name, uint32_t ino);

  // ---- reading ----
  boost::system::result<InodeInfo, std::string> read_inode(uint32_t ino);
  // The entries of directory `ino`, without "." and "..", in on-disk order.
  boost::system::result<std::vector<DirEntry>, std::string> list_dir(uint32_t ino);
  boost::system::result<std::string, std::string> read_symlink(uint32_t ino);
  boost::system::result<Xattrs, std::string> xattrs(uint32_t ino);
  // Calls `sink(offset, bytes)` for each data extent of a regular file, holes skipped (so a
  // sparse file stays sparse); false from the sink stops with an error.
  boost::system::result<void, std::string> read_file(uint32_t ino,
                                                     const std::function<bool(uint64_t, std::string_view)>& sink);

 private:
  struct Impl;
  explicit Ext4Image(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace causeway::distro
