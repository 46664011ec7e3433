#include "vmm/machine/console_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

namespace causeway::machine {
namespace asio = boost::asio;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

UniqueFd open_log(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600));
}

}  // namespace

ConsoleLog::ConsoleLog(asio::io_context& io, std::string socket_path, std::string file, uint64_t max_bytes)
    : socket_path_(std::move(socket_path)),
      file_(std::move(file)),
      max_bytes_(std::max<uint64_t>(max_bytes, 2)),
      acceptor_(io) {}

ConsoleLog::~ConsoleLog() {
  *alive_ = false;
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (conn_) conn_->close(ec);
  ::unlink(socket_path_.c_str());
}

boost::system::error_code ConsoleLog::start() {
  out_ = open_log(file_);
  if (!out_.valid()) return {errno, boost::system::system_category()};
  struct stat st {};
  regular_ = ::fstat(out_.get(), &st) == 0 && S_ISREG(st.st_mode);
  ::unlink(socket_path_.c_str());
  boost::system::error_code ec;
  acceptor_.open(asio::local::stream_protocol(), ec);
  if (!ec) acceptor_.bind(asio::local::stream_protocol::endpoint(socket_path_), ec);
  if (!ec) acceptor_.listen(1, ec);
  if (ec) return ec;
  accept();
  return {};
}

void ConsoleLog::accept() {
  acceptor_.async_accept([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec,
                                                                     asio::local::stream_protocol::socket s) {
    auto a = alive.lock();
    if (!a || !*a || ec == asio::error::operation_aborted) return;
    if (!ec) {
      conn_ = std::make_unique<asio::local::stream_protocol::socket>(std::move(s));
      read();
    }
    accept();
  });
}

void ConsoleLog::read() {
  auto* c = conn_.get();
  c->async_read_some(asio::buffer(buf_),
                     [this, c, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec, size_t n) {
                       auto a = alive.lock();
                       if (!a || !*a || conn_.get() != c) return;  // gone, or replaced by a newer connection
                       if (n > 0) {
                         stats_.bytes_in += n;
                         write_out(buf_.data(), n);
                       }
                       if (ec) return;  // QEMU closed the console (it exits): nothing more to log
                       read();
                     });
}

void ConsoleLog::write_out(const uint8_t* p, size_t n) {
  while (n > 0) {
    if (regular_ && file_size_ >= max_bytes_ / 2) rotate();
    size_t chunk = n;
    if (regular_) chunk = static_cast<size_t>(std::min<uint64_t>(n, max_bytes_ / 2 - file_size_));
    const ssize_t w = out_.valid() ? ::write(out_.get(), p, chunk) : -1;
    if (w <= 0) {
      const int err = out_.valid() ? errno : EBADF;
      if (err == EINTR) continue;
      ++stats_.write_errors;
      stats_.bytes_dropped += n;
      if (error_log_.allow(now_ms()))
        spdlog::warn("guest console: cannot write {}: {}; its output is dropped until it can ({} bytes so far)", file_,
                     std::strerror(err), stats_.bytes_dropped);
      // A regular file that failed is rotated at the next chance (disk space may come back).
      if (regular_) file_size_ = max_bytes_ / 2;
      return;
    }
    stats_.bytes_written += static_cast<uint64_t>(w);
    file_size_ += static_cast<uint64_t>(w);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void ConsoleLog::rotate() {
  ++stats_.rotations;
  const std::string older = file_ + ".1";
  out_.reset();
  if (::rename(file_.c_str(), older.c_str()) != 0) ::unlink(file_.c_str());
  out_ = open_log(file_);
  file_size_ = 0;
}

}  // namespace causeway::machine
