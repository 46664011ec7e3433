// PID 1 duties of the guest agent; see boot.hpp.
#include "vmm/agent/guest/boot.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "vmm/agent/protocol.hpp"

namespace causeway::agent::guest {
namespace {

bool parse_u32(std::string_view s, uint32_t& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

std::string errno_text(const std::string& what, int e) { return what + ": " + std::strerror(e); }

UniqueFd connect_vsock(uint32_t port, int& err) {
  UniqueFd fd(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    err = errno;
    return fd;
  }
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_HOST;
  addr.svm_port = port;
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    err = errno;
    fd.reset();
  }
  return fd;
}

// virtio-serial ports show up as /dev/vportNpM with their name in sysfs.
UniqueFd open_serial_port(int& err) {
  err = ENOENT;
  DIR* d = opendir("/sys/class/virtio-ports");
  if (!d) return UniqueFd();
  UniqueFd fd;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string port = e->d_name;
    if (read_first_line("/sys/class/virtio-ports/" + port + "/name") != kSerialPortName) continue;
    fd.reset(open(("/dev/" + port).c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY));
    err = fd ? 0 : errno;
    break;
  }
  closedir(d);
  return fd;
}

}  // namespace

BootOptions parse_kernel_cmdline(std::string_view cmdline) {
  BootOptions o;
  size_t i = 0;
  while (i < cmdline.size()) {
    while (i < cmdline.size() && (cmdline[i] == ' ' || cmdline[i] == '\n' || cmdline[i] == '\t')) ++i;
    size_t j = i;
    while (j < cmdline.size() && cmdline[j] != ' ' && cmdline[j] != '\n' && cmdline[j] != '\t') ++j;
    const std::string_view word = cmdline.substr(i, j - i);
    i = j;
    const auto eq = word.find('=');
    const std::string_view key = word.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : word.substr(eq + 1);
    if (key == "cw.root") {
      if (value.starts_with("/dev/") && value.size() > 5 && value.find("..") == std::string_view::npos) {
        o.root = value;
      } else {
        o.warnings.push_back("ignoring cw.root=" + std::string(value) + " (a /dev/ path such as /dev/vda)");
      }
      continue;
    }
    if (key == "cw.hostname") {
      if (valid_hostname(value)) {
        o.hostname = value;
      } else {
        o.warnings.push_back("ignoring cw.hostname=" + std::string(value) + " (not a valid host name)");
      }
      continue;
    }
    if (key == "cw.systemd") {
      o.systemd = value.empty() || value == "1" || value == "true";
      continue;
    }
    if (!key.starts_with("cw.agent.")) continue;
    uint32_t n = 0;
    if (key == "cw.agent.transport") {
      if (value == "vsock") {
        o.transport = BootOptions::Transport::Vsock;
      } else if (value == "serial") {
        o.transport = BootOptions::Transport::Serial;
      } else {
        o.warnings.push_back("ignoring cw.agent.transport=" + std::string(value) + " (vsock or serial)");
      }
    } else if (key == "cw.agent.port") {
      if (parse_u32(value, n) && n > 0) {
        o.port = n;
      } else {
        o.warnings.push_back("ignoring cw.agent.port=" + std::string(value));
      }
    } else if (key == "cw.agent.connect_timeout") {
      if (parse_u32(value, n) && n > 0 && n <= 3600) {
        o.connect_timeout = std::chrono::seconds(n);
      } else {
        o.warnings.push_back("ignoring cw.agent.connect_timeout=" + std::string(value));
      }
    } else if (key == "cw.agent.debug") {
      o.debug = value.empty() || value == "1";
    } else {
      o.warnings.push_back("unknown kernel parameter " + std::string(key));
    }
  }
  return o;
}

bool valid_hostname(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  size_t label = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && c != '-') return false;
    if (c == '-' && label == 0) return false;
    ++label;
  }
  return name.back() != '-' && name.back() != '.';
}

void console(std::string_view text) {
  std::string line = "causeway-agent: ";
  line.append(text);
  line.push_back('\n');
  // One write(): lines from the agent never interleave with each other mid-line.
  [[maybe_unused]] const ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

std::vector<std::string> setup_system() {
  std::vector<std::string> problems;
  umask(022);
  struct Mount {
    const char* source;
    const char* target;
    const char* type;
    unsigned long flags;
    const char* data;
  };
  static constexpr Mount kMounts[] = {
      {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
      {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
      {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
      {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
  };
  for (const auto& m : kMounts) {
    mkdir(m.target, 0755);
    if (mount(m.source, m.target, m.type, m.flags, m.data) != 0 && errno != EBUSY)
      problems.push_back(errno_text(std::string("mount ") + m.type + " on " + m.target, errno));
  }
  mkdir("/var", 0755);
  symlink("/run", "/var/run");
  // What udev would make: bash's process substitution and many scripts need them.
  symlink("/proc/self/fd", "/dev/fd");
  symlink("/proc/self/fd/0", "/dev/stdin");
  symlink("/proc/self/fd/1", "/dev/stdout");
  symlink("/proc/self/fd/2", "/dev/stderr");
  // The kernel opened /dev/console from the initramfs (if it had one); reopen it from
  // devtmpfs so 0–2 are valid whatever the initramfs held.
  const int c = open("/dev/console", O_RDWR | O_NOCTTY);
  if (c >= 0) {
    for (int fd = 0; fd <= 2; ++fd) dup2(c, fd);
    if (c > 2) close(c);
  }
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  setenv("HOME", "/root", 1);
  if (!getenv("TERM")) setenv("TERM", "linux", 1);
  return problems;
}

std::string apply_hostname(const std::string& name, std::string& problem) {
  std::string host = name;
  if (host.empty()) {
    host = read_first_line("/etc/hostname");
    while (!host.empty() && (host.back() == ' ' || host.back() == '\r' || host.back() == '\t')) host.pop_back();
    if (!valid_hostname(host)) host = "causeway";
  }
  if (sethostname(host.data(), host.size()) != 0) {
    problem = errno_text("sethostname " + host, errno);
    return {};
  }
  return host;
}

ModuleReport load_modules(const std::string& list) {
  ModuleReport rep;
  std::ifstream in(list);
  if (!in) return rep;  // no list: a kernel with everything built in
  const std::string kdir = "/lib/modules/" + kernel_release() + "/";
  std::string rel;
  while (std::getline(in, rel)) {
    if (rel.empty() || rel[0] == '#') continue;
    std::string name = rel.substr(rel.rfind('/') + 1);
    name = name.substr(0, name.find(".ko"));
    for (char& ch : name)
      if (ch == '-') ch = '_';
    struct stat st {};
    if (stat(("/sys/module/" + name).c_str(), &st) == 0) {
      ++rep.already;  // built in, or pulled in already
      continue;
    }
    UniqueFd fd(open((kdir + rel).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      ++rep.failed;
      rep.lines.push_back(errno_text("module " + name + ": open " + kdir + rel, errno));
      continue;
    }
    if (syscall(SYS_finit_module, fd.get(), "", 0) == 0) {
      ++rep.loaded;
    } else if (errno == EEXIST) {
      ++rep.already;
    } else {
      ++rep.failed;
      rep.lines.push_back(errno_text("module " + name + ": finit_module", errno));
    }
  }
  return rep;
}

UniqueFd connect_host(const BootOptions& opts, std::string& error) {
  const uint32_t port = opts.port ? opts.port : kAgentVsockPort;
  const auto deadline = std::chrono::steady_clock::now() + opts.connect_timeout;
  int err = 0;
  for (;;) {
    UniqueFd fd = opts.transport == BootOptions::Transport::Vsock ? connect_vsock(port, err) : open_serial_port(err);
    if (fd) return fd;
    // Retry while the device may still be probing (ENODEV, ENOENT) or the host is not
    // listening yet (ECONNRESET/ECONNREFUSED/ETIMEDOUT); give up at the deadline.
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (opts.transport == BootOptions::Transport::Vsock) {
    error = "cannot connect to the host over vsock (CID 2, port " + std::to_string(port) + ") within " +
            std::to_string(opts.connect_timeout.count()) + " s: " + std::strerror(err) +
            " — check that the VM has a vsock device (vhost-user-vsock) and that the vsock modules loaded";
  } else {
    error = "no virtio-serial port named " + std::string(kSerialPortName) + " within " +
            std::to_string(opts.connect_timeout.count()) + " s (" + std::strerror(err) +
            ") — QEMU needs -device virtserialport,name=" + std::string(kSerialPortName) +
            " and the guest the virtio_console module";
  }
  return UniqueFd();
}

std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

uint32_t uptime_ms() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint32_t>(ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000);
}

void power_off() {
  sync();
  reboot(RB_POWER_OFF);
  // No ACPI power-off (or it failed): reboot, which QEMU's -no-reboot turns into exit.
  console(errno_text("power off failed, rebooting instead", errno));
  reboot(RB_AUTOBOOT);
  for (;;) pause();
}

}  // namespace causeway::agent::guest
