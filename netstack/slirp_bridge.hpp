// SlirpBridge: one libslirp instance, its poll descriptors and timers driven
// by a Boost.Asio io_context. What the frames mean is the Engine's business
// (engine.hpp); this file only keeps libslirp fed and awake.
//
// Theory of operation
// -------------------
// libslirp is a poll()-style library: before sleeping, the embedder asks it
// which descriptors to watch (slirp_pollfds_fill); after waking, it reports
// their readiness (slirp_pollfds_poll). Asio is an epoll reactor. We bridge
// the two with a private epoll instance that holds libslirp's descriptors:
//
//   pump():  epoll_wait(private, 0) ─► slirp_pollfds_poll ─► slirp_pollfds_fill
//            ─► sync the private epoll's interest set with what libslirp asked for
//            ─► anything already ready?  yes: post another pump()
//                                        no:  wait for the private epoll fd to become
//                                             readable (one Asio descriptor) or for the
//                                             timeout libslirp asked for (steady_timer)
//
// The interest set is cached (fd → events) so a busy turn costs one
// epoll_wait and no epoll_ctl. libslirp tells us, through unregister_poll_fd,
// before it closes a descriptor, so a reused fd number cannot inherit a stale
// cache entry; as a safety net against a close path that forgets, the cache is
// dropped once a second and rebuilt (a few epoll_ctl calls).
//
// Time: libslirp reads time through clock_get_ns, which we answer from the
// injected Clock; its timers (the RA timer) are kept here and fired from
// pump(). With a fake clock a test drives the stack by feeding frames and
// calling pump().
//
// Frames libslirp sends to the guest go to the `ToGuest` handler, from inside
// libslirp's send_packet callback; guest frames come in through input().
// libslirp's guest_error callback is counted and logged, rate-limited.
//
// Limits: one Slirp instance per bridge; its flow table is libslirp's own
// (unbounded in 4.7).
//
// Thread safety: confined to the executor of the io_context it was built on.
#pragma once

#include <netinet/in.h>
#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "netstack/forward.hpp"
#include "netstack/nat_config.hpp"

struct Slirp;

namespace causeway::netstack {

class SlirpBridge {
 public:
  // A frame libslirp sends to the guest; the span is valid only during the call.
  using ToGuest = std::function<void(std::span<const uint8_t>)>;

  // Builds libslirp's virtual network from `cfg` and posts the first pump().
  // Throws when libslirp refuses the configuration (start-up error).
  SlirpBridge(boost::asio::io_context& io, const Clock& clock, const NatConfig& cfg, ToGuest to_guest);
  ~SlirpBridge();
  SlirpBridge(const SlirpBridge&) = delete;
  SlirpBridge& operator=(const SlirpBridge&) = delete;

  // Hands one guest frame to libslirp (slirp_input). Does not wake the loop:
  // callers that expect libslirp to act call schedule_pump().
  void input(std::span<const uint8_t> frame);
  // Posts one pump() unless one is already posted.
  void schedule_pump();
  // One turn of the loop described above. Public so component tests with a
  // fake clock can drive it; production code never needs to call it.
  void pump();

  // A libslirp host forward: `f.host` (IPv4) to `guest`:f.guest_port. Errors are the host's.
  boost::system::error_code add_host_forward(const PortForward& f, in_addr guest);
  void remove_host_forward(const PortForward& f);
  // A libslirp forward from the guest's `addr`:`port` (TCP) to the unix socket at `path`.
  boost::system::error_code add_unix_forward(const std::string& path, in_addr addr, uint16_t port);

  [[nodiscard]] uint64_t pumps() const { return pumps_; }
  [[nodiscard]] uint64_t guest_errors() const { return guest_errors_; }
  // Descriptors libslirp watched in the last turn.
  [[nodiscard]] size_t host_sockets() const { return fds_.size(); }

 private:
  struct Timer;
  struct SlirpDeleter {
    void operator()(Slirp* s) const;
  };

  // libslirp callbacks (opaque = this).
  static ssize_t cb_send_packet(const void* buf, size_t len, void* opaque);
  static void cb_guest_error(const char* msg, void* opaque);
  static int64_t cb_clock_get_ns(void* opaque);
  static void* cb_timer_new_opaque(int id, void* cb_opaque, void* opaque);
  static void cb_timer_free(void* timer, void* opaque);
  static void cb_timer_mod(void* timer, int64_t expire_ms, void* opaque);
  static void cb_register_poll_fd(int fd, void* opaque);
  static void cb_unregister_poll_fd(int fd, void* opaque);
  static void cb_notify(void* opaque);
  static int cb_add_poll(int fd, int events, void* opaque);
  static int cb_get_revents(int idx, void* opaque);

  void sync_interest();
  void arm_waits(uint32_t timeout_ms);
  int collect_ready(int timeout_ms);
  void fire_timers();

  boost::asio::io_context& io_;
  const Clock& clock_;
  ToGuest to_guest_;
  uint64_t pumps_ = 0;
  uint64_t guest_errors_ = 0;
  RateLimitedLog guest_error_log_;

  UniqueFd epfd_;
  boost::asio::posix::stream_descriptor ep_desc_;
  boost::asio::steady_timer wake_timer_;
  bool pump_posted_ = false;
  bool ep_wait_armed_ = false;
  int64_t cache_reset_ms_ = 0;

  std::vector<struct pollfd> fds_;              // this turn's fill
  std::vector<struct pollfd> prev_fds_;         // the fill the interest set was last synced to
  int64_t timer_armed_ms_ = -1;                 // deadline wake_timer_ is armed for, -1 none
  std::unordered_map<int, uint32_t> interest_;  // fd -> epoll events registered
  std::unordered_map<int, int> revents_;        // fd -> SLIRP_POLL_* from the last epoll_wait
  std::vector<std::unique_ptr<Timer>> timers_;

  // Declared last: slirp_cleanup calls back into the members above.
  std::unique_ptr<Slirp, SlirpDeleter> slirp_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace causeway::netstack
