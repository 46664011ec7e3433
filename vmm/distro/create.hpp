// `causeway distro create`: a Debian userland from Debian's archive, built by mmdebstrap
// into a private tarball and then imported (import.hpp) — so a created distribution and an
// imported one are made by the same code.
//
// mmdebstrap (Debian 12: 1.3.5):
//   - --mode=root when running as root, else --mode=unshare (a user namespace with the
//     user's subordinate IDs: /etc/subuid and /etc/subgid, newuidmap/newgidmap from uidmap).
//     check_unshare_prerequisites() says what is missing before a long download starts.
//   - --variant=minbase by default: Essential plus Priority "required" plus apt — what a
//     Debian userland is expected to have (useradd/passwd, mount, login/su, apt); "apt"
//     (Essential + apt) is ~20 packages smaller but has no useradd, so --user and most
//     docs' instructions would fail in it.
//   - --format=tar into STAGING/bootstrap.tar, then build_image as for an import.
//   - customize hooks: LANG=C.UTF-8 in /etc/default/locale (glibc has C.UTF-8 built in, no
//     locales package needed); with --user NAME: useradd -m -s /bin/bash NAME, group sudo
//     and a NOPASSWD sudoers drop-in when the sudo package is installed, and [user]
//     default=NAME in /etc/wsl.conf (the guest agent's default user).
//   - sources: MIRROR SUITE main; for stable codenames without --mirror also SUITE-updates
//     and SUITE-security, as a Debian installation has.
//
// Thread safety: one create per call; blocks the calling thread.
#pragma once

#include <boost/system/result.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/distro/import.hpp"

namespace causeway::distro {

struct CreateOptions {
  std::string suite = "bookworm";
  std::string variant = "minbase";
  std::vector<std::string> include;  // extra packages
  std::string mirror;                // empty: deb.debian.org (and security.debian.org)
  std::string user;                  // empty: none (root is the default user)
  ImportOptions import;
};

// The mmdebstrap command line (pure, for tests): `as_root` chooses the mode.
std::vector<std::string> mmdebstrap_argv(const CreateOptions& o, const std::string& out_tar, bool as_root);

// nullopt when `--user` is a usable Linux user name ([a-z_][a-z0-9_-]*, ≤ 32); else why not.
std::optional<std::string> check_user_name(std::string_view name);

// For an unprivileged run: nullopt when mmdebstrap --mode=unshare can work (subordinate
// IDs for this user, newuidmap and newgidmap installed); else what is missing and the fix.
std::optional<std::string> check_unshare_prerequisites();

boost::system::result<Imported, std::string> create_debian(Store& store, std::string_view name,
                                                           const CreateOptions& options);

}  // namespace causeway::distro
