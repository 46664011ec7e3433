// CaresChannel: one ares_channel driven by Boost.Asio on the caller's
// io_context — no c-ares threads, no select() loop.
//
// c-ares tells us through ARES_OPT_SOCK_STATE_CB which sockets it opened and
// whether it wants to read or write them; each one becomes a
// posix::stream_descriptor on which we async_wait (wait_read / wait_write)
// and, when ready, call ares_process_fd(). A steady_timer follows
// ares_timeout() and calls ares_process_fd(BAD, BAD) so c-ares can time out
// tries and move to the next server. After every c-ares call the timer is
// re-armed and the waits c-ares still wants are restarted (async_wait is
// one-shot).
//
// Ownership: c-ares owns its sockets. A descriptor is release()d, never
// closed, when c-ares reports a socket as closed (readable = writable = 0,
// which it does *before* close()) and in every destructor. A wait that was
// already queued when its socket went away sees `closed` and does nothing,
// so a reused fd number cannot receive a stale readiness.
//
// Callbacks: a request's callback runs inside c-ares (from ares_send,
// ares_process_fd or ares_destroy). It must not call back into this channel
// or destroy it; CaresResolver posts its completions to the io_context.
//
// Thread safety: confined to the io_context's executor.
#pragma once

#include <ares.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>

namespace causeway::dns::internal {

struct CaresChannelConfig {
  std::string servers_csv;  // ares_set_servers_ports_csv: "192.0.2.1:53,[2001:db8::1]:53"
  int flags = 0;            // ARES_FLAG_*
  std::chrono::milliseconds try_timeout{2000};
  int tries = 2;
  bool rotate = false;
  int edns_udp_size = 0;  // ARES_OPT_EDNSPSZ, used when flags has ARES_FLAG_EDNS
};

class CaresChannel {
 public:
  // `status` is an ARES_* code; `answer` is empty unless ARES_SUCCESS.
  using Callback = std::function<void(int status, std::span<const uint8_t> answer)>;

  static boost::system::result<std::unique_ptr<CaresChannel>> create(boost::asio::io_context& io,
                                                                     const CaresChannelConfig& cfg);
  // ares_destroy(): pending requests' callbacks run with ARES_EDESTRUCTION.
  ~CaresChannel();
  CaresChannel(const CaresChannel&) = delete;
  CaresChannel& operator=(const CaresChannel&) = delete;

  // ares_send() of `query` (copied by c-ares).
  void send(std::span<const uint8_t> query, Callback cb);

  [[nodiscard]] size_t pending() const { return pending_; }
  [[nodiscard]] size_t sockets() const { return sockets_.size(); }

 private:
  struct Socket;
  struct Request {
    CaresChannel* channel;
    Callback cb;
  };
  struct ChannelDeleter {
    void operator()(ares_channel c) const;
  };

  explicit CaresChannel(boost::asio::io_context& io);
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void on_socket(int fd, bool readable, bool writable);
  void watch(const std::shared_ptr<Socket>& s, bool write);
  void arm_timer();

  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;
  std::unordered_map<int, std::shared_ptr<Socket>> sockets_;
  size_t pending_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // Declared last, destroyed first: ares_destroy calls on_sock_state and
  // the request callbacks, which use the members above.
  std::unique_ptr<ares_channeldata, ChannelDeleter> channel_;
};

// ARES_* status as text, for logs.
std::string cares_status_text(int status);

}  // namespace causeway::dns::internal
