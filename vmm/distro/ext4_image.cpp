// Ext4Image over libext2fs (ext4_image.hpp has the why).
#include "vmm/distro/ext4_image.hpp"

extern "C" {
#include <et/com_err.h>  // no extern "C" of its own
}
#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>
#include <sys/stat.h>

#include <cstring>

namespace causeway::distro {

namespace {

std::string describe(errcode_t err) {
  const char* msg = ::error_message(err);
  return msg ? std::string(msg) : "error " + std::to_string(err);
}

template <class T>
boost::system::result<T, std::string> fail(std::string why) {
  return {boost::system::in_place_error, std::move(why)};
}

// Documentation/filesystems/ext4/inodes.rst, "Inode Timestamps".
void encode_time(int64_t sec, uint32_t nsec, __u32& base, __u32& extra) {
  base = static_cast<__u32>(static_cast<uint64_t>(sec) & 0xffffffffu);
  const auto epoch = static_cast<uint32_t>((static_cast<uint64_t>(sec - static_cast<int32_t>(base)) >> 32) & 3u);
  extra = (nsec << EXT4_EPOCH_BITS) | epoch;
}

int64_t decode_time(__u32 base, __u32 extra, bool has_extra, uint32_t& nsec) {
  int64_t sec = static_cast<int32_t>(base);
  nsec = 0;
  if (has_extra) {
    sec += static_cast<int64_t>(extra & EXT4_EPOCH_MASK) << 32;
    nsec = extra >> EXT4_EPOCH_BITS;
  }
  return sec;
}

int file_type_of(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFCHR: return EXT2_FT_CHRDEV;
    case S_IFBLK: return EXT2_FT_BLKDEV;
    case S_IFIFO: return EXT2_FT_FIFO;
    case S_IFSOCK: return EXT2_FT_SOCK;
    case S_IFLNK: return EXT2_FT_SYMLINK;
    case S_IFDIR: return EXT2_FT_DIR;
    default: return EXT2_FT_REG_FILE;
  }
}

}  // namespace

struct Ext4Image::Impl {
  ext2_filsys fs = nullptr;
  std::string image;
  bool writable = false;

  template <class T>
  boost::system::result<T, std::string> error(const std::string& what, errcode_t err) const {
    return fail<T>(image + ": " + what + ": " + describe(err));
  }

  // The whole on-disk inode (the large part carries the nanoseconds).
  errcode_t read(uint32_t ino, ext2_inode_large& inode) const {
    std::memset(&inode, 0, sizeof inode);
    return ext2fs_read_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&inode), sizeof inode);
  }
  errcode_t write(uint32_t ino, ext2_inode_large& inode) const {
    return ext2fs_write_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(&inode), sizeof inode);
  }
  [[nodiscard]] bool has_extra(const ext2_inode_large& inode, size_t field_end) const {
    return EXT2_INODE_SIZE(fs->super) > EXT2_GOOD_OLD_INODE_SIZE &&
           static_cast<size_t>(EXT2_GOOD_OLD_INODE_SIZE + inode.i_extra_isize) >= field_end;
  }

  // ext2fs_link, growing the directory when its blocks are full.
  errcode_t link(uint32_t dir, const std::string& name, uint32_t ino, int type) const {
    errcode_t err = ext2fs_link(fs, dir, name.c_str(), ino, type);
    if (err == EXT2_ET_DIR_NO_SPACE) {
      err = ext2fs_expand_dir(fs, dir);
      if (!err) err = ext2fs_link(fs, dir, name.c_str(), ino, type);
    }
    return err;
  }
};

Ext4Image::Ext4Image(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Ext4Image::~Ext4Image() {
  if (impl_ && impl_->fs) ext2fs_close_free(&impl_->fs);
}

boost::system::result<std::unique_ptr<Ext4Image>, std::string> Ext4Image::open(const std::filesystem::path& image,
                                                                               bool writable) {
  ::initialize_ext2_error_table();
  auto impl = std::make_unique<Impl>();
  impl->image = image.string();
  impl->writable = writable;
  const int flags = EXT2_FLAG_64BITS | (writable ? EXT2_FLAG_RW : 0);
  errcode_t err = ext2fs_open(impl->image.c_str(), flags, 0, 0, unix_io_manager, &impl->fs);
  if (err) return fail<std::unique_ptr<Ext4Image>>(impl->image + ": not an ext4 image we can open: " + describe(err));
  err = ext2fs_read_bitmaps(impl->fs);
  if (err) {
    ext2fs_close_free(&impl->fs);
    return fail<std::unique_ptr<Ext4Image>>(impl->image + ": cannot read its bitmaps: " + describe(err));
  }
  return std::unique_ptr<Ext4Image>(new Ext4Image(std::move(impl)));
}

boost::system::result<void, std::string> Ext4Image::close() {
  if (!impl_->fs) return {};
  const errcode_t err = ext2fs_close_free(&impl_->fs);
  if (err) return impl_->image + ": cannot write it back: " + describe(err);
  return {};
}

boost::system::result<uint32_t, std::string> Ext4Image::lookup(std::string_view path) {
  if (path.empty()) return uint32_t{EXT2_ROOT_INO};
  ext2_ino_t ino = 0;
  const std::string p(path);
  const errcode_t err = ext2fs_namei(impl_->fs, EXT2_ROOT_INO, EXT2_ROOT_INO, p.c_str(), &ino);
  if (err) return impl_->error<uint32_t>("/" + p, err);
  return uint32_t{ino};
}

boost::system::result<void, std::string> Ext4Image::set_attrs(uint32_t ino, const InodeAttrs& a) {
  ext2_inode_large inode;
  if (errcode_t err = impl_->read(ino, inode)) return impl_->error<void>("inode " + std::to_string(ino), err);
  inode.i_mode = static_cast<__u16>(a.mode);
  inode.i_uid = static_cast<__u16>(a.uid & 0xffff);
  ext2fs_set_i_uid_high(inode, a.uid >> 16);
  inode.i_gid = static_cast<__u16>(a.gid & 0xffff);
  ext2fs_set_i_gid_high(inode, a.gid >> 16);
  __u32 extra = 0;
  encode_time(a.mtime, a.mtime_nsec, inode.i_mtime, extra);
  inode.i_atime = inode.i_mtime;
  if (impl_->has_extra(inode, offsetof(ext2_inode_large, i_atime_extra) + sizeof inode.i_atime_extra)) {
    inode.i_mtime_extra = extra;
    inode.i_atime_extra = extra;
  }
  if (errcode_t err = impl_->write(ino, inode)) return impl_->error<void>("inode " + std::to_string(ino), err);
  return {};
}

boost::system::result<void, std::string> Ext4Image::set_xattrs(uint32_t ino, const Xattrs& xattrs) {
  if (xattrs.empty()) return {};
  ext2_xattr_handle* h = nullptr;
  errcode_t err = ext2fs_xattrs_open(impl_->fs, ino, &h);
  if (!err) err = ext2fs_xattrs_read(h);
  for (size_t i = 0; !err && i < xattrs.size(); ++i)
    err = ext2fs_xattr_set(h, xattrs[i].first.c_str(), xattrs[i].second.data(), xattrs[i].second.size());
  if (h) {
    const errcode_t close_err = ext2fs_xattrs_close(&h);
    if (!err) err = close_err;
  }
  if (err) return impl_->error<void>("extended attributes of inode " + std::to_string(ino), err);
  return {};
}

boost::system::result<uint32_t, std::string> Ext4Image::make_node(uint32_t dir, std::string_view name, uint32_t mode,
                                                                  uint32_t major, uint32_t minor) {
  ext2_filsys fs = impl_->fs;
  ext2_ino_t ino = 0;
  const std::string n(name);
  errcode_t err = ext2fs_new_inode(fs, dir, 010755, nullptr, &ino);
  if (err) return impl_->error<uint32_t>("no free inode for " + n, err);
  err = impl_->link(dir, n, ino, file_type_of(mode));
  if (err) return impl_->error<uint32_t>("cannot link " + n, err);
  ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
  ext2_inode inode;
  std::memset(&inode, 0, sizeof inode);
  inode.i_mode = static_cast<__u16>(mode);
  inode.i_links_count = 1;
  // Device numbers as the kernel stores them (fs/ext4/inode.c, ext4_write_inode): the old
  // 8:8 encoding in i_block[0] when both fit, else the new one in i_block[1].
  if (S_ISCHR(mode) || S_ISBLK(mode)) {
    if (major < 256 && minor < 256) {
      inode.i_block[0] = major * 256 + minor;
    } else {
      inode.i_block[1] = (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
    }
  }
  err = ext2fs_write_new_inode(fs, ino, &inode);
  if (err) return impl_->error<uint32_t>("cannot write the inode of " + n, err);
  return uint32_t{ino};
}

boost::system::result<void, std::string> Ext4Image::add_link(uint32_t dir, std::string_view name, uint32_t ino) {
  ext2_inode_large inode;
  if (errcode_t err = impl_->read(ino, inode)) return impl_->error<void>("inode " + std::to_string(ino), err);
  if (errcode_t err = impl_->link(dir, std::string(name), ino, file_type_of(inode.i_mode)))
    return impl_->error<void>("cannot link " + std::string(name), err);
  inode.i_links_count = static_cast<__u16>(inode.i_links_count + 1);
  if (errcode_t err = impl_->write(ino, inode)) return impl_->error<void>("inode " + std::to_string(ino), err);
  return {};
}

boost::system::result<InodeInfo, std::string> Ext4Image::read_inode(uint32_t ino) {
  ext2_inode_large inode;
  if (errcode_t err = impl_->read(ino, inode)) return impl_->error<InodeInfo>("inode " + std::to_string(ino), err);
  InodeInfo info;
  info.attrs.mode = inode.i_mode;
  info.attrs.uid = inode_uid(inode);
  info.attrs.gid = inode_gid(inode);
  const bool extra = impl_->has_extra(inode, offsetof(ext2_inode_large, i_mtime_extra) + sizeof inode.i_mtime_extra);
  info.attrs.mtime = decode_time(inode.i_mtime, inode.i_mtime_extra, extra, info.attrs.mtime_nsec);
  info.size = EXT2_I_SIZE(&inode);
  info.links = inode.i_links_count;
  if (S_ISCHR(inode.i_mode) || S_ISBLK(inode.i_mode)) {
    if (inode.i_block[0]) {
      info.rdev_major = (inode.i_block[0] >> 8) & 0xff;
      info.rdev_minor = inode.i_block[0] & 0xff;
    } else {
      info.rdev_major = (inode.i_block[1] & 0xfff00) >> 8;
      info.rdev_minor = (inode.i_block[1] & 0xff) | ((inode.i_block[1] >> 12) & 0xfff00);
    }
  }
  return info;
}

boost::system::result<std::vector<DirEntry>, std::string> Ext4Image::list_dir(uint32_t ino) {
  std::vector<DirEntry> out;
  auto visit = [](ext2_ino_t, int entry, ext2_dir_entry* dirent, int, int, char*, void* priv) -> int {
    if (entry == DIRENT_DOT_FILE || entry == DIRENT_DOT_DOT_FILE) return 0;
    auto* list = static_cast<std::vector<DirEntry>*>(priv);
    list->push_back({std::string(dirent->name, ext2fs_dirent_name_len(dirent)), dirent->inode});
    return 0;
  };
  const errcode_t err = ext2fs_dir_iterate2(impl_->fs, ino, 0, nullptr, visit, &out);
  if (err) return impl_->error<std::vector<DirEntry>>("directory inode " + std::to_string(ino), err);
  return out;
}

boost::system::result<std::string, std::string> Ext4Image::read_symlink(uint32_t ino) {
  ext2_inode_large inode;
  if (errcode_t err = impl_->read(ino, inode)) return impl_->error<std::string>("inode " + std::to_string(ino), err);
  auto* small = reinterpret_cast<ext2_inode*>(&inode);
  const uint64_t size = EXT2_I_SIZE(small);
  if (size > 4096) return fail<std::string>(impl_->image + ": symlink inode " + std::to_string(ino) + " is too long");
  if (inode.i_flags & EXT4_INLINE_DATA_FL) {
    std::string target(size, '\0');
    size_t got = 0;
    if (errcode_t err = ext2fs_inline_data_get(impl_->fs, ino, small, target.data(), &got))
      return impl_->error<std::string>("symlink inode " + std::to_string(ino), err);
    target.resize(std::min<size_t>(got, size));
    return {boost::system::in_place_value, std::move(target)};
  }
  if (ext2fs_is_fast_symlink(small))
    return {boost::system::in_place_value, std::string(reinterpret_cast<const char*>(inode.i_block), size)};
  std::string target;
  auto r = read_file(ino, [&target](uint64_t, std::string_view bytes) {
    target.append(bytes);
    return true;
  });
  if (r.has_error()) return fail<std::string>(r.error());
  target.resize(std::min<size_t>(target.size(), size));
  return {boost::system::in_place_value, std::move(target)};
}

boost::system::result<Xattrs, std::string> Ext4Image::xattrs(uint32_t ino) {
  Xattrs out;
  ext2_xattr_handle* h = nullptr;
  errcode_t err = ext2fs_xattrs_open(impl_->fs, ino, &h);
  if (!err) err = ext2fs_xattrs_read(h);
  if (!err) {
    auto visit = [](char* name, char* value, size_t len, void* priv) -> int {
      static_cast<Xattrs*>(priv)->emplace_back(name, std::string(value, len));
      return 0;
    };
    err = ext2fs_xattrs_iterate(h, visit, &out);
  }
  if (h) ext2fs_xattrs_close(&h);
  if (err == EXT2_ET_EA_NO_SPACE || err == EXT2_ET_MISSING_EA_FEATURE) return out;
  if (err) return impl_->error<Xattrs>("extended attributes of inode " + std::to_string(ino), err);
  return out;
}

boost::system::result<void, std::string> Ext4Image::read_file(
    uint32_t ino, const std::function<bool(uint64_t, std::string_view)>& sink) {
  ext2_file_t file = nullptr;
  errcode_t err = ext2fs_file_open(impl_->fs, ino, 0, &file);
  if (err) return impl_->error<void>("inode " + std::to_string(ino), err);
  std::string buf(1 << 16, '\0');
  uint64_t offset = 0;
  bool stopped = false;
  for (;;) {
    unsigned int got = 0;
    err = ext2fs_file_read(file, buf.data(), static_cast<unsigned>(buf.size()), &got);
    if (err || got == 0) break;
    if (!sink(offset, std::string_view(buf.data(), got))) {
      stopped = true;
      break;
    }
    offset += got;
  }
  const errcode_t close_err = ext2fs_file_close(file);
  if (!err) err = close_err;
  if (err) return impl_->error<void>("reading inode " + std::to_string(ino), err);
  if (stopped) return impl_->image + ": reading inode " + std::to_string(ino) + " was stopped";
  return {};
}

}  // namespace causeway::distro
