// `causeway distro export`: an ext4 image's tree → a pax tarball, without root and without
// booting the image.
//
// Ext4Image (libext2fs) walks the image from its root, depth first, children in name order
// (so two exports of one image are identical), and libarchive writes each inode as a member
// named "./PATH": owner, mode (setuid/setgid/sticky included), mtime with nanoseconds,
// symlink text, device numbers, xattrs (pax SCHILY.xattr records, which GNU tar --xattrs and
// libarchive read), and file data. An inode with several names is written once; its
// other names become hard link members. The root's empty lost+found (mkfs's, not the
// distribution's) is left out.
//
// The image is opened read-only; the caller refuses while the distribution's VM runs (its
// disk would be changing under the walk). The tarball is written to FILE.partial-PID and
// renamed to FILE when complete; on any failure or interrupt it is removed.
//
// Thread safety: one export per call; blocks the calling thread.
#pragma once

#include <atomic>
#include <boost/system/result.hpp>
#include <cstdint>
#include <filesystem>

#include "vmm/distro/import.hpp"

namespace causeway::distro {

struct ExportOptions {
  ProgressFn progress;                        // Progress::Phase::Export
  const std::atomic<bool>* cancel = nullptr;  // set to stop (the partial tarball is removed)
};

struct ExportReport {
  uint64_t entries = 0;
  uint64_t data_bytes = 0;
};

// Writes `image`'s tree to `tarball` ("-": standard output).
boost::system::result<ExportReport, std::string> export_image(const std::filesystem::path& image,
                                                              const std::filesystem::path& tarball,
                                                              const ExportOptions& options);

}  // namespace causeway::distro
