// The instance runtime layout and its locks; see instance_paths.hpp.
#include "cli/instance_paths.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

namespace causeway::cli {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using VoidResult = boost::system::result<void, std::string>;
using LockResult = boost::system::result<FileLock, LockError>;

constexpr auto kLockPoll = std::chrono::milliseconds(20);

// mkdir DIR 0700 if missing; then it must be a directory of ours that nobody
// else can write to.
VoidResult private_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return fmt::format("cannot create {}: {}", dir.string(), std::strerror(errno));
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return fmt::format("cannot use {}: {}", dir.string(), std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return fmt::format("{} is not a directory", dir.string());
  if (st.st_uid != ::geteuid())
    return fmt::format("{} belongs to uid {}, not to us (uid {}): remove it or set XDG_RUNTIME_DIR", dir.string(),
                       st.st_uid, ::geteuid());
  if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0)
    return fmt::format("cannot make {} private: {}", dir.string(), std::strerror(errno));
  return {};
}

}  // namespace

InstancePaths instance_paths(const fs::path& runtime, std::string_view name) {
  InstancePaths p;
  p.name = std::string(name);
  p.runtime = runtime;
  const fs::path instances = runtime / "instances";
  p.dir = instances / p.name;
  p.start_lock = instances / (p.name + ".start");
  p.lock = p.dir / "lock";
  p.state = p.dir / "state.json";
  p.exec = p.dir / "exec.sock";
  p.control = p.dir / "control.sock";
  p.log = p.dir / "daemon.log";
  p.console = p.dir / "console.log";
  p.vm_dir = p.dir / "vm";
  return p;
}

VoidResult prepare_instance_dirs(const InstancePaths& p) {
  std::error_code ec;
  if (p.runtime.has_parent_path()) fs::create_directories(p.runtime.parent_path(), ec);
  if (ec) return fmt::format("cannot create {}: {}", p.runtime.parent_path().string(), ec.message());
  if (auto r = private_dir(p.runtime); r.has_error()) return r;
  if (auto r = private_dir(p.runtime / "instances"); r.has_error()) return r;
  if (auto r = private_dir(p.dir); r.has_error()) return r;
  // The longest socket path the daemon binds: vm/vsock.sock.
  const std::string longest = (p.vm_dir / "vsock.sock").string();
  if (longest.size() >= sizeof(sockaddr_un::sun_path))
    return fmt::format(
        "the runtime directory {} is too deep for unix sockets ({} has {} bytes, at most {}): set "
        "XDG_RUNTIME_DIR (or CAUSEWAY_HOME) to a shorter path",
        p.runtime.string(), longest, longest.size(), sizeof(sockaddr_un::sun_path) - 1);
  return {};
}

std::vector<std::string> instance_names(const fs::path& runtime) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(runtime / "instances", ec)) {
    if (e.is_directory(ec)) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

LockResult FileLock::try_exclusive(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return LockError{false, fmt::format("cannot open {}: {}", path.string(), std::strerror(errno))};
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return LockError{true, fmt::format("{} is locked by another process", path.string())};
    return LockError{false, fmt::format("cannot lock {}: {}", path.string(), std::strerror(errno))};
  }
  return FileLock(std::move(fd));
}

LockResult FileLock::exclusive(const fs::path& path, std::chrono::milliseconds timeout,
                               const std::function<void()>& on_wait) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool waited = false;
  for (;;) {
    auto r = try_exclusive(path);
    if (r.has_value() || !r.error().held) return r;
    if (std::chrono::steady_clock::now() >= deadline)
      return LockError{
          true, fmt::format("{} is still locked by another process after {} ms", path.string(), timeout.count())};
    if (!waited && on_wait) on_wait();
    waited = true;
    std::this_thread::sleep_for(kLockPoll);
  }
}

bool wait_instance_stopped(const InstancePaths& p, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    UniqueFd fd(::open(p.lock.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return true;  // no lock file: never started
    // A shared probe: it never makes an exclusive taker fail.
    if (::flock(fd.get(), LOCK_SH | LOCK_NB) == 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    fd.reset();
    std::this_thread::sleep_for(kLockPoll);
  }
}

VoidResult write_state(const InstancePaths& p, const json& state) {
  const fs::path tmp = p.state.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << state.dump(2) << "\n";
    if (!f.flush()) return fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, p.state, ec);
  if (ec) return fmt::format("cannot write {}: {}", p.state.string(), ec.message());
  return {};
}

std::optional<json> read_state(const InstancePaths& p) {
  std::ifstream f(p.state);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    auto j = json::parse(ss.str());
    if (j.is_object()) return j;
  } catch (const json::exception&) {}
  return std::nullopt;
}

UniqueFd connect_unix(const fs::path& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string s = path.string();
  if (s.size() >= sizeof a.sun_path) {
    errno = ENAMETOOLONG;
    return UniqueFd();
  }
  std::memcpy(a.sun_path, s.data(), s.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    const int e = errno;
    fd.reset();
    errno = e;
  }
  return fd;
}

}  // namespace causeway::cli
