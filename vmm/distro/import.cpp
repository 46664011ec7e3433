// The import pipeline (import.hpp has the theory of operation).
#include "vmm/distro/import.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>

#include "base/unique_fd.hpp"
#include "vmm/distro/ext4_image.hpp"
#include "vmm/distro/process.hpp"
#include "vmm/distro/rootfs_tree.hpp"

namespace causeway::distro {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kProgressInterval = std::chrono::milliseconds(200);
constexpr uint64_t kBlock = 4096;                 // mkfs.ext4's block size for images this big
constexpr uint64_t kImageMetadata = 16ull << 20;  // bitmaps, descriptors, root dirs: slack
constexpr size_t kLabelMax = 16;                  // ext4 volume label bytes

template <class T>
boost::system::result<T, std::string> fail(std::string why) {
  return {boost::system::in_place_error, std::move(why)};
}

uint64_t free_bytes(const fs::path& dir) {
  struct statvfs sv {};
  if (::statvfs(dir.c_str(), &sv) != 0) return 0;
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

uint64_t round_up(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

struct ArchiveCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveCloser>;

std::chrono::milliseconds since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t);
}

// Unpack progress, rate-limited to one report per kProgressInterval.
struct UnpackReporter {
  ImportReport& report;
  Clock::time_point last{};
  void progress_tick(const ImportOptions& opt, archive* a, uint64_t tar_size, uint64_t members, bool force) {
    if (!opt.progress) return;
    const auto now = Clock::now();
    if (!force && now - last < kProgressInterval) return;
    last = now;
    Progress p;
    p.phase = Progress::Phase::Unpack;
    p.entries = members;
    p.bytes = report.data_bytes;
    const auto consumed = archive_filter_bytes(a, -1);
    if (tar_size > 0 && consumed >= 0)
      p.percent = static_cast<int>(std::min<uint64_t>(100, static_cast<uint64_t>(consumed) * 100 / tar_size));
    opt.progress(p);
  }
};

// Reads the tarball into `tree` and the staging directory `stage`.
class Unpacker {
 public:
  Unpacker(const fs::path& tarball, const fs::path& stage, const ImportOptions& opt, ImportReport& report)
      : tarball_(tarball), stage_(stage), opt_(opt), report_{report}, tree_(std::time(nullptr)) {}

  boost::system::result<void, std::string> run() {
    ArchivePtr a(archive_read_new());
    archive_read_support_filter_all(a.get());
    archive_read_support_format_tar(a.get());
    std::error_code ec;
    tar_size_ = fs::file_size(tarball_, ec);
    if (ec) return "cannot read " + tarball_.string() + ": " + ec.message();
    if (archive_read_open_filename(a.get(), tarball_.c_str(), 1 << 16) != ARCHIVE_OK) {
      const std::string why = archive_error_string(a.get());
      if (why.find("Unrecognized archive format") != std::string::npos)
        return tarball_.string() + " is not a tarball (" + archive_error_string(a.get()) + ")";
      return "cannot read " + tarball_.string() + ": " + archive_error_string(a.get());
    }
    if (::mkdir(stage_.c_str(), 0700) != 0) return "cannot create " + stage_.string() + ": " + std::strerror(errno);
    for (;;) {
      if (opt_.cancel && opt_.cancel->load()) return std::string("interrupted");
      archive_entry* e = nullptr;
      const int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r == ARCHIVE_FATAL || r == ARCHIVE_RETRY) return corrupt(a.get());
      if (auto s = member(a.get(), e); s.has_error()) return s.error();
      report_.progress_tick(opt_, a.get(), tar_size_, members_, false);
    }
    if (members_ == 0) return tarball_.string() + " is not a tarball (or an empty one): no member could be read";
    report_.progress_tick(opt_, a.get(), tar_size_, members_, true);
    if (acl_members_)
      report_.report.warnings.push_back(std::to_string(acl_members_) +
                                        " member(s) carry POSIX ACLs as tar ACL records: not kept");
    if (socket_members_)
      report_.report.warnings.push_back(std::to_string(socket_members_) + " socket member(s) skipped");
    return {};
  }

  [[nodiscard]] const RootfsTree& tree() const { return tree_; }

 private:
  boost::system::result<void, std::string> corrupt(archive* a) const {
    const char* why = archive_error_string(a);
    return tarball_.string() + " is corrupt or not a tarball: " + (why ? why : "unreadable") + " (after " +
           std::to_string(members_) + " member(s))";
  }

  static EntryKind kind_of(archive_entry* e) {
    if (archive_entry_hardlink(e) != nullptr) return EntryKind::HardLink;
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR: return EntryKind::Directory;
      case AE_IFLNK: return EntryKind::Symlink;
      case AE_IFCHR: return EntryKind::CharDevice;
      case AE_IFBLK: return EntryKind::BlockDevice;
      case AE_IFIFO: return EntryKind::Fifo;
      default: return EntryKind::Regular;
    }
  }

  static const char* name_of(archive_entry* e) {
    const char* p = archive_entry_pathname(e);
    return p ? p : archive_entry_pathname_utf8(e);
  }

  boost::system::result<void, std::string> member(archive* a, archive_entry* e) {
    ++members_;
    if (archive_entry_filetype(e) == AE_IFSOCK && archive_entry_hardlink(e) == nullptr) {
      ++socket_members_;
      return {};
    }
    const char* raw = name_of(e);
    auto path = normalize_member_name(raw ? raw : "");
    if (path.has_error()) return tarball_.string() + ": " + path.error() + "; refusing the tarball";
    TreeEntry t;
    t.kind = kind_of(e);
    t.perm = archive_entry_perm(e) & 07777;
    t.uid = static_cast<uint32_t>(archive_entry_uid(e));
    t.gid = static_cast<uint32_t>(archive_entry_gid(e));
    if (archive_entry_mtime_is_set(e)) {
      t.mtime = archive_entry_mtime(e);
      t.mtime_nsec = static_cast<uint32_t>(archive_entry_mtime_nsec(e));
    }
    if (t.kind == EntryKind::Regular) t.size = static_cast<uint64_t>(std::max<la_int64_t>(0, archive_entry_size(e)));
    t.major = static_cast<uint32_t>(archive_entry_rdevmajor(e));
    t.minor = static_cast<uint32_t>(archive_entry_rdevminor(e));
    if (t.kind == EntryKind::Symlink) {
      const char* target = archive_entry_symlink(e);
      t.target = target ? target : "";
    } else if (t.kind == EntryKind::HardLink) {
      auto target = normalize_member_name(archive_entry_hardlink(e));
      if (target.has_error()) return tarball_.string() + ": hard link '" + *path + "': " + target.error();
      t.target = *target;
    }
    archive_entry_xattr_reset(e);
    const char* xname = nullptr;
    const void* xvalue = nullptr;
    size_t xsize = 0;
    while (archive_entry_xattr_next(e, &xname, &xvalue, &xsize) == ARCHIVE_OK)
      t.xattrs.emplace_back(xname, std::string(static_cast<const char*>(xvalue), xsize));
    if (archive_entry_acl_count(e, ARCHIVE_ENTRY_ACL_TYPE_POSIX1E) > 0) ++acl_members_;
    const EntryKind kind = t.kind;
    const std::string target = t.target;
    auto step = tree_.add(*path, std::move(t));
    if (step.has_error()) return tarball_.string() + ": " + step.error() + "; refusing the tarball";
    return stage(a, e, *path, kind, target, *step);
  }

  // What the member needs in the staging tree.
  boost::system::result<void, std::string> stage(archive* a, archive_entry* e, const std::string& path, EntryKind kind,
                                                 const std::string& target, const RootfsTree::Step& step) {
    for (const auto& dir : step.mkdirs)
      if (::mkdir((stage_ / dir).c_str(), 0700) != 0 && errno != EEXIST) return io_error("mkdir", dir);
    const fs::path p = stage_ / path;
    if (step.remove_existing) {
      std::error_code ec;
      fs::remove_all(p, ec);
      if (ec) return "cannot replace " + p.string() + ": " + ec.message();
    }
    if (!step.write) return {};
    switch (kind) {
      case EntryKind::Directory:
        if (::mkdir(p.c_str(), 0700) != 0 && errno != EEXIST) return io_error("mkdir", path);
        return {};
      case EntryKind::Symlink:
        if (::symlink(target.c_str(), p.c_str()) != 0) return io_error("symlink", path);
        return {};
      case EntryKind::HardLink:
        if (step.link_to_node) return {};  // made in the image (Ext4Image::add_link)
        if (::link((stage_ / step.link_to).c_str(), p.c_str()) != 0) return io_error("link", path);
        return {};
      case EntryKind::Regular: return write_file(a, e, path);
      case EntryKind::CharDevice:
      case EntryKind::BlockDevice:
      case EntryKind::Fifo: return {};  // made in the image (Ext4Image::make_node)
    }
    return {};
  }

  boost::system::result<void, std::string> write_file(archive* a, archive_entry* e, const std::string& path) {
    const fs::path p = stage_ / path;
    UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return io_error("create", path);
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    for (;;) {
      const int r = archive_read_data_block(a, &buf, &size, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return corrupt(a);
      const char* data = static_cast<const char*>(buf);
      while (size > 0) {
        const ssize_t n = ::pwrite(fd.get(), data, size, offset);
        if (n < 0) return io_error("write", path);
        data += n;
        size -= static_cast<size_t>(n);
        offset += n;
        report_.report.data_bytes += static_cast<uint64_t>(n);
      }
      if (opt_.cancel && opt_.cancel->load()) return std::string("interrupted");
    }
    const la_int64_t total = archive_entry_size(e);
    if (total > 0 && ::ftruncate(fd.get(), total) != 0) return io_error("write", path);
    return {};
  }

  std::string io_error(const char* what, const std::string& path) const {
    const int err = errno;
    if (err == ENOSPC || err == EDQUOT)
      return "no space left on the disk of " + stage_.parent_path().parent_path().string() + " while unpacking (" +
             format_bytes(report_.report.data_bytes) + " unpacked so far from a " + format_bytes(tar_size_) +
             " tarball; " + format_bytes(free_bytes(stage_)) +
             " free now): free some space, or set CAUSEWAY_HOME / XDG_DATA_HOME to a larger disk";
    return std::string(what) + " " + (stage_ / path).string() + ": " + std::strerror(err);
  }

  const fs::path& tarball_;
  const fs::path& stage_;
  const ImportOptions& opt_;
  UnpackReporter report_;
  RootfsTree tree_;
  uint64_t tar_size_ = 0;
  uint64_t members_ = 0;
  uint64_t acl_members_ = 0;
  uint64_t socket_members_ = 0;
};

// Step 2: room in the image and on the disk for `data_bytes` of files in `entries` inodes.
boost::system::result<void, std::string> check_space(const RootfsTree& tree, const fs::path& work_dir,
                                                     uint64_t image_size) {
  uint64_t data = 0;  // what mkfs will write: file blocks and one block per directory
  for (const auto& [path, e] : tree.entries())
    data += round_up(e.size, kBlock) + (e.kind == EntryKind::Directory ? kBlock : 0);
  // Inside the image, ext4's own share: inode tables (256 bytes per 16 KiB), journal (up to
  // 1/64 for small images), bitmaps and descriptors — about 1/32 of it.
  const uint64_t in_image = data + data / 10 + image_size / 32 + kImageMetadata;
  if (in_image > image_size)
    return "the files need about " + format_bytes(in_image) + " but the image size is " + format_bytes(image_size) +
           ": give a larger --size";
  // On the host only what is written counts (the image is sparse; the lazy-init options
  // leave inode tables and journal as holes).
  const uint64_t on_disk = data + kImageMetadata;
  const uint64_t free = free_bytes(work_dir);
  if (free < on_disk)
    return "not enough free space for the image in " + work_dir.parent_path().string() + ": it needs about " +
           format_bytes(on_disk) + " more, " + format_bytes(free) +
           " are free (the unpacked files are deleted after mkfs): free some space, or set CAUSEWAY_HOME / "
           "XDG_DATA_HOME to a larger disk";
  return {};
}

// Step 3.
boost::system::result<void, std::string> run_mkfs(const fs::path& tree_dir, const fs::path& image,
                                                  std::string_view label, uint64_t size, const ImportOptions& opt) {
  if (!find_tool("mkfs.ext4")) return std::string("mkfs.ext4 not found: install e2fsprogs (apt-get install e2fsprogs)");
  if (opt.progress) opt.progress(Progress{Progress::Phase::Mkfs, 0, 0, 0, -1, {}});
  const std::vector<std::string> argv = {"mkfs.ext4",
                                         "-q",
                                         "-F",
                                         "-d",
                                         tree_dir.string(),
                                         "-E",
                                         "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1",
                                         "-L",
                                         std::string(label.substr(0, kLabelMax)),
                                         image.string(),
                                         std::to_string(size / 1024) + "k"};
  auto r = run_tool(argv, nullptr, opt.cancel);
  if (r.has_error()) return r.error();
  if (r->success()) {
    ::chmod(image.c_str(), 0600);  // it holds /etc/shadow
    return {};
  }
  std::string out = r->output;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (out.find("No space left") != std::string::npos || out.find("Could not allocate") != std::string::npos)
    return "mkfs.ext4 ran out of space (" + format_bytes(free_bytes(image.parent_path())) + " free in " +
           image.parent_path().parent_path().string() + "; or give a larger --size): " + out;
  return "mkfs.ext4 " + r->describe() + ": " + out;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}
std::string base_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Step 4.
boost::system::result<void, std::string> apply_metadata(const RootfsTree& tree, const fs::path& image,
                                                        const ImportOptions& opt) {
  auto img = Ext4Image::open(image, /*writable=*/true);
  if (img.has_error()) return img.error();
  Ext4Image& fs4 = **img;
  std::map<std::string, uint32_t> made;  // device nodes and fifos made here
  for (const auto& [path, e] : tree.entries()) {
    if (e.kind != EntryKind::CharDevice && e.kind != EntryKind::BlockDevice && e.kind != EntryKind::Fifo) continue;
    auto dir = fs4.lookup(parent_of(path));
    if (dir.has_error()) return dir.error();
    auto ino = fs4.make_node(*dir, base_of(path), e.mode(), e.major, e.minor);
    if (ino.has_error()) return ino.error();
    made[path] = *ino;
  }
  Progress p{Progress::Phase::Metadata, 0, tree.size(), 0, -1, {}};
  auto last = Clock::now();
  for (const auto& [path, e] : tree.entries()) {
    if (opt.cancel && opt.cancel->load()) return std::string("interrupted");
    ++p.entries;
    if (e.kind == EntryKind::HardLink) {
      auto node = made.find(e.target);
      if (node == made.end()) continue;  // mkfs linked it already
      auto dir = fs4.lookup(parent_of(path));
      if (dir.has_error()) return dir.error();
      if (auto r = fs4.add_link(*dir, base_of(path), node->second); r.has_error()) return r.error();
      continue;
    }
    auto it = made.find(path);
    auto ino = it != made.end() ? boost::system::result<uint32_t, std::string>(it->second) : fs4.lookup(path);
    if (ino.has_error()) return ino.error();
    if (auto r = fs4.set_attrs(*ino, InodeAttrs{e.mode(), e.uid, e.gid, e.mtime, e.mtime_nsec}); r.has_error())
      return r.error();
    if (auto r = fs4.set_xattrs(*ino, e.xattrs); r.has_error()) return "/" + path + ": " + r.error();
    if (opt.progress && Clock::now() - last > kProgressInterval) {
      last = Clock::now();
      opt.progress(p);
    }
  }
  if (opt.progress) opt.progress(p);
  return fs4.close();
}

}  // namespace

boost::system::result<uint64_t, std::string> parse_size(std::string_view text) {
  const std::string t(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(t.c_str(), &end);
  std::string unit(end ? end : "");
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && (unit.substr(1) == "B" || unit.substr(1) == "IB")) unit = unit.substr(0, 1);
  double mult = 1;
  if (unit == "K")
    mult = 1024.0;
  else if (unit == "M")
    mult = 1024.0 * 1024;
  else if (unit == "G")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty() && unit != "B")
    mult = -1;
  if (t.empty() || end == t.c_str() || errno != 0 || mult < 0 || !std::isfinite(v) || v <= 0)
    return fail<uint64_t>("'" + t + "' is not a size: use e.g. 16G, 512M or 1T");
  const double bytes = v * mult;
  if (bytes < static_cast<double>(kMinImageSize))
    return fail<uint64_t>("size " + t + " is too small: at least " + format_bytes(kMinImageSize));
  if (bytes > 16.0 * 1024 * 1024 * 1024 * 1024 * 1024)
    return fail<uint64_t>("size " + t + " is too large (ext4 images here end at 16 EiB... and your disk sooner)");
  return round_up(static_cast<uint64_t>(bytes), kBlock);
}

std::string format_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, kUnits[u]);
  return buf;
}

boost::system::result<ImportReport, std::string> build_image(const fs::path& tarball, const fs::path& work_dir,
                                                             const fs::path& image, std::string_view label,
                                                             const ImportOptions& options) {
  ImportReport report;
  const fs::path tree_dir = work_dir / "tree";
  // Whatever happens below, the staging tree goes; the image goes unless it is complete.
  bool complete = false;
  struct Cleanup {
    const fs::path& tree_dir;
    const fs::path& image;
    const bool& complete;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(tree_dir, ec);
      if (!complete) fs::remove(image, ec);
    }
  } cleanup{tree_dir, image, complete};

  auto t0 = Clock::now();
  Unpacker unpacker(tarball, tree_dir, options, report);
  if (auto r = unpacker.run(); r.has_error()) return fail<ImportReport>(r.error());
  report.unpack = since(t0);
  const RootfsTree& tree = unpacker.tree();
  report.entries = tree.size();
  if (auto why = tree.not_a_rootfs()) return fail<ImportReport>(tarball.string() + " " + *why);
  if (auto r = check_space(tree, work_dir, options.size_bytes); r.has_error()) return fail<ImportReport>(r.error());

  t0 = Clock::now();
  if (auto r = run_mkfs(tree_dir, image, label, options.size_bytes, options); r.has_error())
    return fail<ImportReport>(r.error());
  report.mkfs = since(t0);
  std::error_code ec;
  fs::remove_all(tree_dir, ec);  // free its space before the image grows further

  t0 = Clock::now();
  if (auto r = apply_metadata(tree, image, options); r.has_error())
    return fail<ImportReport>("writing owners, modes and device nodes into the image: " + r.error());
  report.metadata = since(t0);
  complete = true;
  return report;
}

boost::system::result<Imported, std::string> import_tarball(Store& store, std::string_view name,
                                                            const fs::path& tarball, const ImportOptions& options) {
  if (auto bad = check_name(name)) return fail<Imported>(*bad);
  std::error_code ec;
  if (!fs::is_regular_file(tarball, ec) && !fs::is_fifo(tarball, ec))
    return fail<Imported>("cannot read " + tarball.string() + ": " +
                          (fs::exists(tarball, ec) ? "not a regular file" : "no such file"));
  if (::access(tarball.c_str(), R_OK) != 0)
    return fail<Imported>("cannot read " + tarball.string() + ": " + std::strerror(errno));
  if (!find_tool("mkfs.ext4"))
    return fail<Imported>("mkfs.ext4 not found: install e2fsprogs (apt-get install e2fsprogs)");
  auto partial = store.reserve(name);
  if (partial.has_error()) return fail<Imported>(partial.error());
  PartialDir cleanup(*partial);  // removed however we leave, unless committed

  auto report = build_image(tarball, *partial, *partial / Store::kImageFile, name, options);
  if (report.has_error()) return fail<Imported>(report.error());
  const std::string source =
      options.source.empty() ? "import " + fs::absolute(tarball, ec).filename().string() : options.source;
  auto d = store.commit(*partial, name, source);
  if (d.has_error()) return fail<Imported>(d.error());
  cleanup.keep();
  return Imported{*d, *report};
}

}  // namespace causeway::distro
