#include "cli/output_pump.hpp"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>

namespace causeway::cli {

OutputPump::OutputPump(boost::asio::any_io_executor ex, int fd, std::function<void(bool)> on_pressure, Options options)
    : ex_(std::move(ex)), fd_(fd), on_pressure_(std::move(on_pressure)), options_(options) {
  thread_ = std::thread([this] { run(); });
}

OutputPump::~OutputPump() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();  // after what was queued is written (or the descriptor failed)
}

void OutputPump::push(std::span<const uint8_t> data) {
  if (data.empty()) return;
  bool pause = false;
  {
    std::lock_guard lock(mu_);
    if (failed_) {
      stats_.bytes_dropped += data.size();
      return;
    }
    queue_.insert(queue_.end(), data.begin(), data.end());
    stats_.bytes_queued += data.size();
    // Under the lock: the writer decides on resuming under it too, after this data is written.
    if (!pressured_ && queue_.size() + in_flight_ >= options_.high_water) {
      pressured_ = pause = true;
      ++stats_.pauses;
    }
  }
  cv_.notify_one();
  if (pause && on_pressure_) on_pressure_(true);
}

bool OutputPump::pressured() const {
  std::lock_guard lock(mu_);
  return pressured_;
}

OutputPumpStats OutputPump::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void OutputPump::run() {
  std::vector<uint8_t> chunk;
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything is written
    chunk.swap(queue_);
    queue_.clear();
    in_flight_ = chunk.size();
    lock.unlock();
    size_t off = 0;
    bool failed = false;
    while (off < chunk.size()) {
      const ssize_t n = ::write(fd_, chunk.data() + off, chunk.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {  // EPIPE, EBADF, ENOSPC: the output is gone; the guest keeps running
        failed = true;
        break;
      }
      off += static_cast<size_t>(n);
      std::lock_guard inner(mu_);
      in_flight_ = chunk.size() - off;
      stats_.bytes_written += static_cast<uint64_t>(n);
    }
    lock.lock();
    in_flight_ = 0;
    if (failed) {
      failed_ = true;
      stats_.bytes_dropped += (chunk.size() - off) + queue_.size();
      queue_.clear();
    }
    // Below low water (or nothing can be written any more): let the owner resume the guest.
    if (pressured_ && (failed || queue_.size() <= options_.low_water) && !resume_posted_) {
      resume_posted_ = true;
      boost::asio::post(ex_, [this, alive = std::weak_ptr<bool>(alive_)] {
        if (alive.expired()) return;
        bool resume = false;
        {
          std::lock_guard g(mu_);
          resume_posted_ = false;
          resume = pressured_;
          pressured_ = false;
        }
        if (resume && on_pressure_) on_pressure_(false);
      });
    }
    chunk.clear();
    if (chunk.capacity() > options_.high_water) chunk.shrink_to_fit();
  }
}

}  // namespace causeway::cli
