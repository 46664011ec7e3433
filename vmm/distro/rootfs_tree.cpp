// RootfsTree (rootfs_tree.hpp has the rules).
#include "vmm/distro/rootfs_tree.hpp"

#include <sys/stat.h>

#include <set>

namespace causeway::distro {

namespace {

template <class T>
boost::system::result<T, std::string> fail(std::string why) {
  return {boost::system::in_place_error, std::move(why)};
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

bool is_dir(const std::map<std::string, TreeEntry>& m, const std::string& p) {
  auto it = m.find(p);
  return it != m.end() && it->second.kind == EntryKind::Directory;
}

}  // namespace

uint32_t TreeEntry::mode() const {
  uint32_t type = S_IFREG;
  switch (kind) {
    case EntryKind::Directory: type = S_IFDIR; break;
    case EntryKind::Symlink: type = S_IFLNK; break;
    case EntryKind::CharDevice: type = S_IFCHR; break;
    case EntryKind::BlockDevice: type = S_IFBLK; break;
    case EntryKind::Fifo: type = S_IFIFO; break;
    case EntryKind::Regular:
    case EntryKind::HardLink: type = S_IFREG; break;
  }
  return type | (perm & 07777);
}

boost::system::result<std::string, std::string> normalize_member_name(std::string_view raw) {
  const std::string shown(raw);
  if (raw.find('\0') != std::string_view::npos) return fail<std::string>("member name contains a NUL byte");
  if (raw.empty()) return fail<std::string>("a member has an empty name");
  if (raw.front() == '/')
    return fail<std::string>("member '" + shown +
                             "' has an absolute name (a root filesystem tarball has relative ones)");
  std::string out;
  size_t i = 0;
  while (i <= raw.size()) {
    size_t j = raw.find('/', i);
    if (j == std::string_view::npos) j = raw.size();
    const std::string_view part = raw.substr(i, j - i);
    if (part == "..")
      return fail<std::string>("member '" + shown + "' climbs out of the root with '..' (path traversal)");
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    i = j + 1;
  }
  return {boost::system::in_place_value, std::move(out)};
}

RootfsTree::RootfsTree(int64_t now) : now_(now) {
  TreeEntry root;
  root.kind = EntryKind::Directory;
  root.perm = 0755;
  root.mtime = now;
  root.implicit = true;
  entries_.emplace("", root);
}

boost::system::result<RootfsTree::Step, std::string> RootfsTree::add(const std::string& path, TreeEntry entry) {
  Step step;
  if (path.empty()) {
    if (entry.kind != EntryKind::Directory) return fail<Step>("the tarball's root ('./') is not a directory");
    entries_[""] = std::move(entry);
    step.write = false;
    return step;
  }
  // Every ancestor must be a directory (listed or implicit), never a symlink or a file.
  std::vector<std::string> missing;
  for (std::string p = parent_of(path); !p.empty(); p = parent_of(p)) {
    auto it = entries_.find(p);
    if (it == entries_.end()) {
      missing.push_back(p);
      continue;
    }
    if (it->second.kind != EntryKind::Directory)
      return fail<Step>(
          "member '" + path + "' is below '" + p +
          "', which the tarball made a non-directory (a symlink?), and following it could write outside the tree");
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    TreeEntry dir;
    dir.kind = EntryKind::Directory;
    dir.perm = 0755;
    dir.mtime = now_;
    dir.implicit = true;
    entries_.emplace(*it, dir);
    step.mkdirs.push_back(*it);
  }
  if (entry.kind == EntryKind::HardLink) {
    auto target = entries_.find(entry.target);
    if (target != entries_.end() && target->second.kind == EntryKind::HardLink)
      target = entries_.find(target->second.target);
    if (target == entries_.end())
      return fail<Step>("hard link '" + path + "' names '" + entry.target + "', which comes nowhere before it");
    if (target->second.kind == EntryKind::Directory)
      return fail<Step>("hard link '" + path + "' names the directory '" + entry.target + "'");
    if (target->first == path) {
      step.write = false;  // a link to itself: nothing to do
      return step;
    }
    entry.target = target->first;
    step.link_to = target->first;
    const EntryKind k = target->second.kind;
    step.link_to_node = k == EntryKind::CharDevice || k == EntryKind::BlockDevice || k == EntryKind::Fifo;
  }
  auto existing = entries_.find(path);
  if (existing != entries_.end()) {
    if (existing->second.kind == EntryKind::Directory && entry.kind == EntryKind::Directory) {
      existing->second = std::move(entry);
      step.write = false;
      return step;
    }
    step.remove_existing = true;
    if (existing->second.kind == EntryKind::Directory) {
      // Everything below goes with it.
      const std::string prefix = path + "/";
      auto below = entries_.lower_bound(prefix);
      while (below != entries_.end() && below->first.compare(0, prefix.size(), prefix) == 0)
        below = entries_.erase(below);
    }
  }
  entries_[path] = std::move(entry);
  return step;
}

std::optional<std::string> RootfsTree::not_a_rootfs() const {
  const bool has_etc = is_dir(entries_, "etc");
  const bool has_bin = entries_.count("bin") > 0 || is_dir(entries_, "usr/bin");
  if (has_etc && has_bin) return std::nullopt;
  std::string missing;
  if (!has_etc) missing = "no /etc directory";
  if (!has_bin) missing += std::string(missing.empty() ? "" : " and ") + "no /bin or /usr/bin";
  std::string why = "does not look like a root filesystem: it has " + missing;
  if (entries_.size() == 1) return "is empty: " + why;
  // Everything under one folder (a tarball of the directory instead of its contents)?
  std::set<std::string> tops;
  for (const auto& [p, e] : entries_)
    if (!p.empty()) tops.insert(p.substr(0, p.find('/')));
  if (tops.size() == 1) {
    const std::string& top = *tops.begin();
    if (is_dir(entries_, top + "/etc"))
      why += " (its files are all under '" + top + "/': make the tarball from inside that directory, e.g. tar -C " +
             top + " -cf FILE.tar .)";
  }
  return why;
}

}  // namespace causeway::distro
