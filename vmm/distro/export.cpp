// export_image (export.hpp has the theory of operation).
#include "vmm/distro/export.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>

#include "vmm/distro/ext4_image.hpp"

namespace causeway::distro {

namespace fs = std::filesystem;

namespace {

constexpr auto kProgressInterval = std::chrono::milliseconds(200);

struct WriterCloser {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

class Exporter {
 public:
  Exporter(Ext4Image& img, archive* out, const ExportOptions& opt) : img_(img), out_(out), opt_(opt) {}

  boost::system::result<ExportReport, std::string> run() {
    if (auto r = visit("", 2 /* EXT2_ROOT_INO */); r.has_error()) return {boost::system::in_place_error, r.error()};
    progress(true);
    return report_;
  }

 private:
  boost::system::result<void, std::string> visit(const std::string& path, uint32_t ino) {
    if (opt_.cancel && opt_.cancel->load()) return std::string("interrupted");
    auto info = img_.read_inode(ino);
    if (info.has_error()) return info.error();
    if (auto r = write_member(path, ino, *info); r.has_error()) return r;
    if (!S_ISDIR(info->attrs.mode)) return {};
    auto children = img_.list_dir(ino);
    if (children.has_error()) return children.error();
    std::sort(children->begin(), children->end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
    for (const auto& child : *children) {
      if (path.empty() && child.name == "lost+found" && empty_dir(child.ino)) continue;
      if (auto r = visit(path.empty() ? child.name : path + "/" + child.name, child.ino); r.has_error()) return r;
    }
    return {};
  }

  bool empty_dir(uint32_t ino) {
    auto list = img_.list_dir(ino);
    return list.has_value() && list->empty();
  }

  boost::system::result<void, std::string> write_member(const std::string& path, uint32_t ino, const InodeInfo& info) {
    std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
    const std::string name = path.empty() ? "./" : "./" + path;
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_set_uid(e.get(), info.attrs.uid);
    archive_entry_set_gid(e.get(), info.attrs.gid);
    archive_entry_set_mode(e.get(), info.attrs.mode);
    archive_entry_set_mtime(e.get(), info.attrs.mtime, info.attrs.mtime_nsec);
    const uint32_t mode = info.attrs.mode;
    if (!S_ISDIR(mode) && info.links > 1) {
      auto [it, first] = links_.emplace(ino, name);
      if (!first) {
        archive_entry_set_hardlink(e.get(), it->second.c_str());
        archive_entry_set_size(e.get(), 0);
        return header(e.get(), name);
      }
    }
    auto xattrs = img_.xattrs(ino);
    if (xattrs.has_error()) return xattrs.error();
    for (const auto& [key, value] : *xattrs)
      archive_entry_xattr_add_entry(e.get(), key.c_str(), value.data(), value.size());
    if (S_ISLNK(mode)) {
      auto target = img_.read_symlink(ino);
      if (target.has_error()) return target.error();
      archive_entry_set_symlink(e.get(), target->c_str());
    } else if (S_ISCHR(mode) || S_ISBLK(mode)) {
      archive_entry_set_rdevmajor(e.get(), info.rdev_major);
      archive_entry_set_rdevminor(e.get(), info.rdev_minor);
    }
    const bool regular = S_ISREG(mode);
    archive_entry_set_size(e.get(), regular ? static_cast<la_int64_t>(info.size) : 0);
    if (auto r = header(e.get(), name); r.has_error()) return r;
    if (!regular || info.size == 0) return {};
    std::string write_error;
    auto r = img_.read_file(ino, [&](uint64_t, std::string_view bytes) {
      if (archive_write_data(out_, bytes.data(), bytes.size()) < 0) {
        write_error = archive_error_string(out_);
        return false;
      }
      report_.data_bytes += bytes.size();
      progress(false);
      return !(opt_.cancel && opt_.cancel->load());
    });
    if (!write_error.empty()) return "writing the tarball: " + write_error;
    if (opt_.cancel && opt_.cancel->load()) return std::string("interrupted");
    if (r.has_error()) return r.error();
    return {};
  }

  boost::system::result<void, std::string> header(archive_entry* e, const std::string& name) {
    if (archive_write_header(out_, e) < ARCHIVE_WARN)
      return "writing the tarball (" + name + "): " + archive_error_string(out_);
    ++report_.entries;
    progress(false);
    return {};
  }

  void progress(bool force) {
    if (!opt_.progress) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < kProgressInterval) return;
    last_ = now;
    Progress p;
    p.phase = Progress::Phase::Export;
    p.entries = report_.entries;
    p.bytes = report_.data_bytes;
    opt_.progress(p);
  }

  Ext4Image& img_;
  archive* out_;
  const ExportOptions& opt_;
  ExportReport report_;
  std::map<uint32_t, std::string> links_;  // inode → the first member name it was written as
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace

boost::system::result<ExportReport, std::string> export_image(const fs::path& image, const fs::path& tarball,
                                                              const ExportOptions& options) {
  using R = boost::system::result<ExportReport, std::string>;
  auto img = Ext4Image::open(image, /*writable=*/false);
  if (img.has_error()) return R(boost::system::in_place_error, img.error());
  const bool to_stdout = tarball == "-";
  fs::path partial = tarball;
  partial += ".partial-" + std::to_string(::getpid());
  std::unique_ptr<archive, WriterCloser> out(archive_write_new());
  archive_write_set_format_pax_restricted(out.get());
  // xattrs as SCHILY.xattr records only: GNU tar and libarchive both read them, and GNU tar
  // would warn about each LIBARCHIVE.xattr record it does not know.
  archive_write_set_format_option(out.get(), "pax", "xattrheader", "SCHILY");
  archive_write_set_bytes_in_last_block(out.get(), 1);
  // 0600: the tree holds /etc/shadow and the like; the user can widen it afterwards.
  int fd = STDOUT_FILENO;
  if (!to_stdout) {
    fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
      return R(boost::system::in_place_error, "cannot write " + tarball.string() + ": " + std::strerror(errno));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() {
      if (fd != STDOUT_FILENO) ::close(fd);
    }
  } closer{fd};
  if (archive_write_open_fd(out.get(), fd) != ARCHIVE_OK) {
    std::error_code ignored;
    if (!to_stdout) fs::remove(partial, ignored);
    return R(boost::system::in_place_error, "cannot write " +
                                                (to_stdout ? std::string("standard output") : tarball.string()) + ": " +
                                                archive_error_string(out.get()));
  }
  Exporter exporter(**img, out.get(), options);
  auto report = exporter.run();
  const int closed = archive_write_close(out.get());
  std::error_code ec;
  if (report.has_error() || closed != ARCHIVE_OK) {
    const std::string why =
        report.has_error() ? report.error() : "writing the tarball: " + std::string(archive_error_string(out.get()));
    if (!to_stdout) fs::remove(partial, ec);
    return R(boost::system::in_place_error, why);
  }
  if (!to_stdout && ::rename(partial.c_str(), tarball.c_str()) != 0) {
    const int err = errno;
    fs::remove(partial, ec);
    return R(boost::system::in_place_error, "cannot write " + tarball.string() + ": " + std::strerror(err));
  }
  return report;
}

}  // namespace causeway::distro
