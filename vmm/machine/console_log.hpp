// ConsoleLog: the guest's serial console, through causeway, into a file of bounded size.
//
// Why: with `-chardev file` QEMU appends the console to the file without limit, so a guest
// that prints in a loop fills the host's disk. Instead QEMU connects its serial chardev to a
// unix socket we listen on (`-chardev socket`, QemuOptions::console_socket) and we write
// what arrives, keeping at most max_bytes on disk in two halves: when FILE reaches
// max_bytes / 2 it becomes FILE.1 (replacing the older half) and FILE starts again, so the
// newest output is always in FILE (tail_file reads it) and the one before in FILE.1.
// A write that fails (the disk is full: ENOSPC, EDQUOT, EFBIG) drops those bytes, counts
// them and warns (rate-limited); reading goes on regardless, so the guest's serial port never
// stalls on a full disk, and the next rotation tries a fresh file. Rotation happens only
// when FILE is a regular file (a FIFO or /dev/null is written as it is).
//
// Limits: one QEMU connection at a time (a new one replaces the old); the socket lives in
// the VM's private run directory.
// Thread safety: confined to the io_context given at construction.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "base/log.hpp"
#include "base/unique_fd.hpp"

namespace causeway::machine {

struct ConsoleLogStats {
  uint64_t bytes_in = 0;       // read from QEMU
  uint64_t bytes_written = 0;  // into the file
  uint64_t bytes_dropped = 0;  // a write failed (disk full)
  uint64_t write_errors = 0;
  uint64_t rotations = 0;
};

class ConsoleLog {
 public:
  static constexpr uint64_t kDefaultMaxBytes = 4u << 20;  // 4 MiB on disk: two halves of 2 MiB

  ConsoleLog(boost::asio::io_context& io, std::string socket_path, std::string file,
             uint64_t max_bytes = kDefaultMaxBytes);
  ~ConsoleLog();
  ConsoleLog(const ConsoleLog&) = delete;
  ConsoleLog& operator=(const ConsoleLog&) = delete;

  // Opens FILE (truncated) and listens on the socket; call before QEMU starts.
  boost::system::error_code start();
  [[nodiscard]] const ConsoleLogStats& stats() const { return stats_; }
  [[nodiscard]] const std::string& socket_path() const { return socket_path_; }

 private:
  void accept();
  void read();
  void write_out(const uint8_t* p, size_t n);
  void rotate();

  std::string socket_path_, file_;
  uint64_t max_bytes_;
  UniqueFd out_;
  uint64_t file_size_ = 0;
  bool regular_ = false;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::unique_ptr<boost::asio::local::stream_protocol::socket> conn_;
  std::array<uint8_t, 4096> buf_{};
  ConsoleLogStats stats_;
  RateLimitedLog error_log_{1, 60'000};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::machine
