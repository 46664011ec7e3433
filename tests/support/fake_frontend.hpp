// FakeFrontend: the QEMU side of a vhost-user connection, for component
// tests. Speaks the protocol over one end of a socketpair (the other end is
// given to vhost_user::Server::serve), passes descriptors with SCM_RIGHTS
// and pumps the server's io_context while it waits for replies, so a test
// reads like QEMU's own start-up sequence.
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include "base/unique_fd.hpp"
#include "tests/support/fake_guest.hpp"
#include "tests/support/fakes.hpp"
#include "vmm/vhost_user/message.hpp"

namespace causeway::testing {

namespace vu = vmm::vhost_user;

class FakeFrontend {
 public:
  // Creates the socketpair; `server_end()` goes to Server::serve.
  explicit FakeFrontend(boost::asio::io_context& io) : io_(io) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    mine_.reset(sv[0]);
    theirs_ = sv[1];
  }
  ~FakeFrontend() {
    if (theirs_ >= 0) ::close(theirs_);
  }
  boost::asio::local::stream_protocol::socket server_end() {
    boost::asio::local::stream_protocol::socket s(io_, boost::asio::local::stream_protocol(), theirs_);
    theirs_ = -1;
    return s;
  }

  // Sends raw bytes (+ fds).
  bool send_raw(std::span<const uint8_t> bytes, const std::vector<int>& fds = {}) {
    iovec iov{const_cast<uint8_t*>(bytes.data()), bytes.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    std::vector<char> ctrl;
    if (!fds.empty()) {
      ctrl.resize(CMSG_SPACE(sizeof(int) * fds.size()));
      mh.msg_control = ctrl.data();
      mh.msg_controllen = ctrl.size();
      cmsghdr* cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
    }
    return ::sendmsg(mine_.get(), &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }

  // Sends a request; with `want_reply` waits (pumping the server) for the
  // reply and returns its payload. nullopt: no reply (connection closed).
  std::optional<std::vector<uint8_t>> request(vu::Request r, std::span<const uint8_t> payload,
                                              const std::vector<int>& fds = {}, bool want_reply = false,
                                              uint32_t flags = 0) {
    if (!send_raw(vu::encode_request(r, payload, flags), fds)) return std::nullopt;
    if (!want_reply) {
      pump();
      return std::vector<uint8_t>{};
    }
    return read_reply(static_cast<uint32_t>(r));
  }
  // A request with NEED_REPLY (REPLY_ACK negotiated): returns the status (0 ok).
  std::optional<uint64_t> acked(vu::Request r, std::span<const uint8_t> payload, const std::vector<int>& fds = {}) {
    auto p = request(r, payload, fds, true, vu::kFlagNeedReply);
    if (!p || p->size() != 8) return std::nullopt;
    uint64_t v;
    std::memcpy(&v, p->data(), 8);
    return v;
  }
  std::optional<uint64_t> get_u64(vu::Request r) {
    auto p = request(r, {}, {}, true);
    if (!p || p->size() != 8) return std::nullopt;
    uint64_t v;
    std::memcpy(&v, p->data(), 8);
    return v;
  }

  std::optional<std::vector<uint8_t>> read_reply(uint32_t req) {
    std::vector<uint8_t> hdr(vu::kHeaderSize);
    if (!read_exact(hdr)) return std::nullopt;
    uint32_t rr, flags, size;
    std::memcpy(&rr, hdr.data(), 4);
    std::memcpy(&flags, hdr.data() + 4, 4);
    std::memcpy(&size, hdr.data() + 8, 4);
    if (rr != req || !(flags & vu::kFlagReply)) return std::nullopt;
    std::vector<uint8_t> p(size);
    if (size > 0 && !read_exact(p)) return std::nullopt;
    return p;
  }

  // True once the server has closed its end.
  bool closed_by_server() {
    pump();
    pollfd pfd{mine_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0) return false;
    char c;
    return ::recv(mine_.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  void close() { mine_.reset(); }

  void pump() {
    for (int i = 0; i < 20; ++i) {
      io_.restart();
      io_.poll();
    }
  }

  // ---- helpers for the common set-up sequence ----
  static std::vector<uint8_t> u64(uint64_t v) {
    std::vector<uint8_t> p(8);
    std::memcpy(p.data(), &v, 8);
    return p;
  }
  static std::vector<uint8_t> state(uint32_t index, uint32_t num) {
    std::vector<uint8_t> p(8);
    std::memcpy(p.data(), &index, 4);
    std::memcpy(p.data() + 4, &num, 4);
    return p;
  }
  static std::vector<uint8_t> addr(uint32_t index, uint64_t desc, uint64_t used, uint64_t avail) {
    std::vector<uint8_t> p(40);
    std::memcpy(p.data(), &index, 4);
    std::memcpy(p.data() + 8, &desc, 8);
    std::memcpy(p.data() + 16, &used, 8);
    std::memcpy(p.data() + 24, &avail, 8);
    return p;
  }
  static std::vector<uint8_t> mem_table(const std::vector<vmm::MemoryRegionSpec>& specs) {
    std::vector<uint8_t> p(8 + 32 * specs.size());
    const uint32_t n = static_cast<uint32_t>(specs.size());
    std::memcpy(p.data(), &n, 4);
    for (size_t i = 0; i < specs.size(); ++i) {
      std::memcpy(p.data() + 8 + 32 * i, &specs[i].guest_phys_addr, 8);
      std::memcpy(p.data() + 16 + 32 * i, &specs[i].size, 8);
      std::memcpy(p.data() + 24 + 32 * i, &specs[i].user_addr, 8);
      std::memcpy(p.data() + 32 + 32 * i, &specs[i].mmap_offset, 8);
    }
    return p;
  }
  // The front-end's view of one ring: kick and call eventfds.
  struct RingFds {
    UniqueFd kick{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    UniqueFd call{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    void kick_now() const {
      const uint64_t one = 1;
      (void)!::write(kick.get(), &one, 8);
    }
    // Reads (and clears) the interrupt count.
    uint64_t interrupts() const {
      uint64_t v = 0;
      if (::read(call.get(), &v, 8) != 8) return 0;
      return v;
    }
  };
  // SET_VRING_NUM/ADDR/BASE/CALL/KICK (+ ENABLE) for `q` in `ram`, all acked.
  bool setup_ring(uint32_t index, FakeGuestRam& ram, const FakeDriverQueue& q, const RingFds& fds, bool enable) {
    const auto uva = [&](uint64_t gpa) { return ram.uva() + (gpa - ram.base()); };
    return acked(vu::Request::kSetVringNum, state(index, q.size())) == 0u &&
           acked(vu::Request::kSetVringAddr, addr(index, uva(q.desc_gpa()), uva(q.used_gpa()), uva(q.avail_gpa()))) ==
               0u &&
           acked(vu::Request::kSetVringBase, state(index, 0)) == 0u &&
           acked(vu::Request::kSetVringCall, u64(index), {fds.call.get()}) == 0u &&
           acked(vu::Request::kSetVringKick, u64(index), {fds.kick.get()}) == 0u &&
           (!enable || acked(vu::Request::kSetVringEnable, state(index, 1)) == 0u);
  }

 private:
  bool read_exact(std::vector<uint8_t>& out) {
    size_t have = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (have < out.size() && std::chrono::steady_clock::now() < deadline) {
      pump();
      const ssize_t n = ::recv(mine_.get(), out.data() + have, out.size() - have, MSG_DONTWAIT);
      if (n == 0) return false;
      if (n > 0) have += static_cast<size_t>(n);
    }
    return have == out.size();
  }

  boost::asio::io_context& io_;
  UniqueFd mine_;
  int theirs_ = -1;
};

}  // namespace causeway::testing
