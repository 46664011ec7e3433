// OutputPump: the guest command's stdout or stderr, written to one of our own
// descriptors by a writer thread, so that a slow reader of `causeway run`'s
// output never stalls the engine thread (and with it every flow of the VM).
//
// Theory of operation
//   push() (engine thread) appends to a queue and returns at once. The writer
//   thread takes everything queued and write()s it, blocking as long as the
//   reader makes it — ours is the only thread that waits. Back-pressure goes
//   to the guest, not into memory: when the queue reaches high_water,
//   on_pressure(true) runs (the owner pauses reading the agent's vsock
//   stream, so the guest gets no credit and its command blocks in write());
//   when the writer has brought it down to low_water, on_pressure(false) is
//   posted to the owner's executor. The queue can pass high_water by what
//   was already on its way (one vsock delivery), never by more.
//   Limit: the agent's listener reports ride the same stream, so while it is
//   paused new guest listeners wait too (existing forwards and relayed
//   connections have streams of their own and keep working). Output on a
//   stream of its own would lift that (an agent protocol change).
//   A descriptor that fails (EPIPE: the reader went away) ends the writing:
//   later output is counted as dropped and nothing blocks again.
//   The destructor lets the writer finish what is queued (as a blocking
//   write would have), then joins it.
//
// Why a thread and not O_NONBLOCK: our stdout is shared with the shell and
// other processes (one open file description); making it non-blocking would
// change it for them too, and regular files and terminals would need other
// handling besides. One thread per output descriptor, for the life of a run.
//
// Thread safety: push(), pressured() and stats() on the owner's executor;
// the writer thread touches only the mutex-guarded queue and the descriptor.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

namespace causeway::cli {

struct OutputPumpStats {
  uint64_t bytes_queued = 0;   // accepted by push()
  uint64_t bytes_written = 0;  // written to the descriptor
  uint64_t bytes_dropped = 0;  // after the descriptor failed
  uint64_t pauses = 0;         // times on_pressure(true) ran
};

class OutputPump {
 public:
  struct Options {
    size_t high_water = 1u << 20;   // bytes queued before the guest is paused
    size_t low_water = 256u << 10;  // bytes queued when it is resumed
  };

  // `fd` is borrowed (stays open; usually 1 or 2). on_pressure runs on `ex`.
  OutputPump(boost::asio::any_io_executor ex, int fd, std::function<void(bool paused)> on_pressure, Options options);
  OutputPump(boost::asio::any_io_executor ex, int fd, std::function<void(bool paused)> on_pressure)
      : OutputPump(std::move(ex), fd, std::move(on_pressure), Options{}) {}
  ~OutputPump();
  OutputPump(const OutputPump&) = delete;
  OutputPump& operator=(const OutputPump&) = delete;

  void push(std::span<const uint8_t> data);
  [[nodiscard]] bool pressured() const;
  [[nodiscard]] OutputPumpStats stats() const;

 private:
  void run();

  boost::asio::any_io_executor ex_;
  const int fd_;
  std::function<void(bool)> on_pressure_;
  const Options options_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards posted callbacks

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint8_t> queue_;  // guarded by mu_
  size_t in_flight_ = 0;        // guarded: taken by the writer, not yet written
  bool stopping_ = false;       // guarded
  bool failed_ = false;         // guarded
  bool pressured_ = false;      // guarded: on_pressure(true) ran, (false) not yet
  OutputPumpStats stats_;       // guarded
  bool resume_posted_ = false;  // guarded
  std::thread thread_;
};

}  // namespace causeway::cli
