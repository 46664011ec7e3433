// `causeway distro …` (distro_command.hpp).
#include "cli/distro_command.hpp"

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>

#include "cli/net_options.hpp"
#include "vmm/distro/create.hpp"
#include "vmm/distro/export.hpp"
#include "vmm/distro/import.hpp"
#include "vmm/distro/store.hpp"

namespace causeway::cli {

namespace {

using distro::Progress;

// The one piece of state a signal handler may touch; the work polls it (ImportOptions::cancel).
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables)
std::atomic<bool> g_interrupted{false};

void on_stop_signal(int) { g_interrupted.store(true); }

// SIGINT/SIGTERM/SIGHUP set g_interrupted (no SA_RESTART: blocking calls return EINTR).
void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

// Progress on stderr: one line rewritten in place on a terminal; on anything else a plain
// line when the phase changes and at most every kPlainInterval.
class ProgressLine {
 public:
  explicit ProgressLine(bool quiet) : quiet_(quiet), tty_(::isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() { finish(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void operator()(const Progress& p) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    const bool new_phase = !shown_ || p.phase != last_phase_;
    if (!tty_ && !new_phase && now - last_plain_ < kPlainInterval) return;
    std::string text = describe(p);
    if (tty_) {
      if (text.size() > kTtyWidth) text = text.substr(0, kTtyWidth);
      std::fprintf(stderr, "\r\033[K%s", text.c_str());
      dirty_ = true;
    } else {
      std::fprintf(stderr, "%s\n", text.c_str());
      last_plain_ = now;
    }
    std::fflush(stderr);
    shown_ = true;
    last_phase_ = p.phase;
  }
  // Ends the in-place line so the next message starts on a fresh one.
  void finish() {
    if (dirty_) std::fputs("\r\033[K", stderr);
    dirty_ = false;
  }

 private:
  static constexpr auto kPlainInterval = std::chrono::seconds(5);
  static constexpr size_t kTtyWidth = 150;

  static std::string describe(const Progress& p) {
    using Phase = Progress::Phase;
    switch (p.phase) {
      case Phase::Download: return "bootstrapping: " + p.message;
      case Phase::Unpack: {
        std::string s = "unpacking: " + std::to_string(p.entries) + " entries, " + distro::format_bytes(p.bytes);
        if (p.percent >= 0) s += " (" + std::to_string(p.percent) + "% of the tarball)";
        return s;
      }
      case Phase::Mkfs: return "making the ext4 image (mkfs.ext4)";
      case Phase::Metadata:
        return "setting owners, modes and device nodes: " + std::to_string(p.entries) + "/" +
               std::to_string(p.total_entries);
      case Phase::Export:
        return "exporting: " + std::to_string(p.entries) + " entries, " + distro::format_bytes(p.bytes);
    }
    return {};
  }

  bool quiet_, tty_;
  bool shown_ = false, dirty_ = false;
  Progress::Phase last_phase_ = Progress::Phase::Unpack;
  std::chrono::steady_clock::time_point last_plain_{};
};

constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as a shell reports it

int fail(const std::string& why) {
  if (g_interrupted.load()) {
    std::fprintf(stderr, "causeway: interrupted; nothing was kept\n");
    return kExitInterrupted;
  }
  std::fprintf(stderr, "causeway: %s\n", why.c_str());
  return kExitFailure;
}

int run_list(const distro::Store& store) {
  auto all = store.list();
  if (all.has_error()) return fail(all.error());
  if (all->empty()) {
    std::printf(
        "no distributions yet (make one: causeway distro create NAME, or causeway distro import NAME FILE.tar)\n");
    return 0;
  }
  const auto def = store.default_name();
  std::printf("%-3s %-20s %10s %10s  %-20s  %s\n", "", "NAME", "SIZE", "ON DISK", "CREATED", "SOURCE");
  for (const auto& d : *all) {
    std::printf("%-3s %-20s %10s %10s  %-20s  %s\n", def == d.name ? "*" : "", d.name.c_str(),
                distro::format_bytes(d.size_bytes).c_str(), distro::format_bytes(d.disk_bytes).c_str(),
                d.created.c_str(), d.source.c_str());
  }
  return 0;
}

int run_default(distro::Store& store, const std::string& name) {
  if (name.empty()) {
    const auto def = store.default_name();
    if (!def) return fail("no default distribution (set one: causeway distro default NAME)");
    std::printf("%s\n", def->c_str());
    return 0;
  }
  if (auto r = store.set_default(name); r.has_error()) return fail(r.error());
  return 0;
}

int run_remove(distro::Store& store, const distro::Dirs& dirs, const std::string& name) {
  if (auto d = store.find(name); d.has_error()) return fail(d.error());
  if (distro::instance_running(dirs.runtime, name))
    return fail("the VM of '" + name + "' is running: terminate it first: causeway terminate " + name);
  if (auto r = store.remove(name); r.has_error()) return fail(r.error());
  return 0;
}

// The end of a successful import/create: what was made, and what was not kept.
int report_made(const DistroCommand& c, const distro::Imported& made) {
  for (const auto& w : made.report.warnings) std::fprintf(stderr, "causeway: warning: %s\n", w.c_str());
  if (!c.quiet)
    std::fprintf(stderr,
                 "made '%s': %llu entries, %s of files; image %s (%s on disk): %s\n"
                 "  (unpack %.1f s, mkfs %.1f s, metadata %.1f s)\n",
                 made.distro.name.c_str(), static_cast<unsigned long long>(made.report.entries),
                 distro::format_bytes(made.report.data_bytes).c_str(),
                 distro::format_bytes(made.distro.size_bytes).c_str(),
                 distro::format_bytes(made.distro.disk_bytes).c_str(), made.distro.image.c_str(),
                 static_cast<double>(made.report.unpack.count()) / 1000.0,
                 static_cast<double>(made.report.mkfs.count()) / 1000.0,
                 static_cast<double>(made.report.metadata.count()) / 1000.0);
  return 0;
}

boost::system::result<distro::ImportOptions, std::string> import_options(const DistroCommand& c, ProgressLine& line) {
  distro::ImportOptions o;
  if (!c.size.empty()) {
    auto size = distro::parse_size(c.size);
    if (size.has_error()) return {boost::system::in_place_error, "--size: " + size.error()};
    o.size_bytes = *size;
  }
  o.cancel = &g_interrupted;
  o.progress = [&line](const Progress& p) { line(p); };
  return o;
}

int run_import(const DistroCommand& c, distro::Store& store) {
  ProgressLine line(c.quiet);
  auto o = import_options(c, line);
  if (o.has_error()) return fail(o.error());
  auto made = distro::import_tarball(store, c.name, c.file, *o);
  line.finish();
  if (made.has_error()) return fail("import " + c.name + ": " + made.error());
  return report_made(c, *made);
}

int run_create(const DistroCommand& c, distro::Store& store) {
  ProgressLine line(c.quiet);
  auto o = import_options(c, line);
  if (o.has_error()) return fail(o.error());
  distro::CreateOptions co;
  co.suite = c.suite;
  co.variant = c.variant;
  co.include = c.include;
  co.mirror = c.mirror;
  co.user = c.user;
  co.import = *o;
  auto made = distro::create_debian(store, c.name, co);
  line.finish();
  if (made.has_error()) return fail("create " + c.name + ": " + made.error());
  return report_made(c, *made);
}

int run_export(const DistroCommand& c, const distro::Store& store, const distro::Dirs& dirs) {
  auto d = store.find(c.name);
  if (d.has_error()) return fail(d.error());
  if (distro::instance_running(dirs.runtime, c.name))
    return fail("the VM of '" + c.name +
                "' is running and may be writing its disk: terminate it first: causeway terminate " + c.name);
  ProgressLine line(c.quiet);
  distro::ExportOptions o;
  o.cancel = &g_interrupted;
  o.progress = [&line](const Progress& p) { line(p); };
  auto r = distro::export_image(d->image, c.file, o);
  line.finish();
  if (r.has_error()) return fail("export " + c.name + ": " + r.error());
  if (!c.quiet)
    std::fprintf(stderr, "exported '%s' to %s: %llu entries, %s of files\n", c.name.c_str(), c.file.c_str(),
                 static_cast<unsigned long long>(r->entries), distro::format_bytes(r->data_bytes).c_str());
  return 0;
}

void define_create(DistroCommand& c) {
  c.create = c.app->add_subcommand("create", "Build a Debian userland with mmdebstrap and make it a distribution");
  c.create->add_option("NAME", c.name, "Name of the new distribution (letters, digits, '.', '_', '-'; 1-32)")
      ->required();
  c.create->add_option("--suite", c.suite, "Debian suite or codename (default bookworm)");
  c.create->add_option("--include", c.include, "Extra packages, comma-separated or repeated (python3,curl)")
      ->delimiter(',');
  c.create->add_option("--mirror", c.mirror, "Debian mirror URL (default http://deb.debian.org/debian)");
  c.create
      ->add_option("--variant", c.variant,
                   "mmdebstrap variant: minbase (default: Priority required + apt), apt (Essential + apt only), "
                   "important or standard")
      ->check(CLI::IsMember({"minbase", "apt", "important", "standard"}));
  c.create->add_option("--user", c.user,
                       "Also create this user (home, bash, group sudo when sudo is included) and make it the "
                       "distribution's default user ([user] default= in /etc/wsl.conf)");
  c.create->footer(
      "Runs mmdebstrap (package mmdebstrap) into a private tarball, then imports it as `distro import` does.\n"
      "As root it uses --mode=root; otherwise --mode=unshare, which needs subordinate IDs for your user in\n"
      "/etc/subuid and /etc/subgid and the newuidmap/newgidmap tools (package uidmap).\n"
      "The distribution gets LANG=C.UTF-8, Debian's updates and security suites (for stable codenames),\n"
      "and no init system of its own: causeway's agent runs commands in it.\n\n"
      "Examples:\n"
      "  causeway distro create debian\n"
      "  causeway distro create dev --include python3,curl,dnsutils,iproute2 --user alice --size 32G");
}

void define_import(DistroCommand& c) {
  c.import = c.app->add_subcommand("import", "Make a distribution from a root filesystem tarball");
  c.import->add_option("NAME", c.name, "Name of the new distribution (letters, digits, '.', '_', '-'; 1-32)")
      ->required();
  c.import->add_option("ROOTFS", c.file, "The tarball: .tar, .tar.gz, .tar.xz, .tar.zst, .tar.bz2 (any tar format)")
      ->required();
  c.import->footer(
      "Keeps what the tarball says: owners, modes (setuid, setgid, sticky), symlinks, hard links, mtimes,\n"
      "extended attributes (security.capability, user.*) and device nodes — also when run without root:\n"
      "files are unpacked into a private staging directory next to the image, packed with mkfs.ext4 -d,\n"
      "and the rest is written into the image directly (libext2fs). Members with absolute names or '..'\n"
      "are refused, as is a tarball without /etc and /bin (or /usr/bin). Nothing is left behind on\n"
      "failure or Ctrl-C.\n\n"
      "Examples:\n"
      "  docker export $(docker create debian:bookworm) > debian.tar && causeway distro import deb debian.tar\n"
      "  causeway distro import alpine alpine-minirootfs-3.20.0-x86_64.tar.gz --size 4G");
}

}  // namespace

void define_distro(CLI::App& parent, DistroCommand& c) {
  c.app = parent.add_subcommand("distro", "Make, list, remove and export distributions (ext4 disk images for the VM)");
  c.app->require_subcommand(1);
  c.app->footer(
      "Images live in $XDG_DATA_HOME/causeway/distros/NAME/rootfs.ext4 (~/.local/share/causeway/...),\n"
      "for root in /var/lib/causeway/distros/, or under $CAUSEWAY_HOME/data/ when that is set.\n"
      "They are sparse: a 16G image of a minimal Debian takes a few hundred MB on the host.");
  define_create(c);
  define_import(c);
  for (CLI::App* sub : {c.create, c.import}) {
    sub->add_option("--size", c.size,
                    "Size of the disk the VM sees: 16G (default), 512M, 1T; the image is sparse, so it only costs "
                    "what is written");
    sub->add_flag("-q,--quiet", c.quiet, "No progress on stderr");
  }
  c.list = c.app->add_subcommand("list", "List distributions: * marks the default, sizes (virtual, on disk), source");
  c.default_ = c.app->add_subcommand("default", "Show the default distribution, or make NAME the default");
  c.default_->add_option("NAME", c.name, "The distribution to make the default");
  c.remove = c.app->add_subcommand("remove", "Delete a distribution and its disk (refused while its VM runs)");
  c.remove->add_option("NAME", c.name, "The distribution")->required();
  c.export_ =
      c.app->add_subcommand("export", "Write a distribution's tree as a tarball (without root, without booting)");
  c.export_->add_option("NAME", c.name, "The distribution")->required();
  c.export_->add_option("FILE", c.file, "The tarball to write (pax format; '-' for stdout)")->required();
  c.export_->add_flag("-q,--quiet", c.quiet, "No progress on stderr");
  c.export_->footer(
      "Owners, modes, symlinks, hard links, device nodes, mtimes and extended attributes are kept\n"
      "(pax headers, as GNU tar --xattrs and libarchive read them). Refused while the distribution's VM runs.\n\n"
      "Example:\n"
      "  causeway distro export debian debian.tar && causeway distro import debian-copy debian.tar");
}

int run_distro(DistroCommand& c) {
  const distro::Dirs dirs = distro::default_dirs();
  distro::Store store(dirs.data);
  catch_stop_signals();
  if (c.list->parsed()) return run_list(store);
  if (c.default_->parsed()) return run_default(store, c.name);
  if (c.remove->parsed()) return run_remove(store, dirs, c.name);
  if (c.import->parsed()) return run_import(c, store);
  if (c.create->parsed()) return run_create(c, store);
  if (c.export_->parsed()) return run_export(c, store, dirs);
  return kExitUsage;
}

}  // namespace causeway::cli
