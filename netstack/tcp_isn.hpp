// TcpIsnGenerator: initial sequence numbers for the TCP fast path, as
// RFC 6528 §3 specifies them:
//
//   ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
//
// M is a timer that ticks every 4 µs (RFC 6528 §3, after RFC 793's clock);
// F is SipHash-2-4 (libsodium's crypto_shorthash) under a 128-bit key drawn
// once per generator. `now` is passed in; nothing here reads a clock.
//
// Why it matters (issue 13, item 3): a `-p` forward opens connections
// *toward* the guest from source ports of the engine's choosing. When that
// range wraps, the guest may still hold the previous connection on the same
// four-tuple in TIME-WAIT (its server closed first). Linux's TIME-WAIT
// accepts a new SYN only when its sequence number is after the old
// connection's last one (or its timestamp is newer, which we do not send);
// otherwise it answers with the old ACK and the SYN is lost until TIME-WAIT
// ends 60 s later. Random ISNs lost that coin toss half the time — the
// forward fell to a few connections per second once the ports wrapped. With
// M, the ISN for a four-tuple only moves forward (250,000 per second, faster
// than any one connection on the tuple sent data between reuses short of
// 1 MB/s per reused port), and F keeps each tuple's sequence space
// unpredictable to anyone who sees only other tuples (RFC 6528 §1).
//
// Thread safety: const after construction; isn() is safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace causeway::netstack {

class TcpIsnGenerator {
 public:
  static constexpr int64_t kTickNs = 4000;  // RFC 6528 §3: M ticks every 4 microseconds
  using SecretKey = std::array<uint8_t, 16>;

  TcpIsnGenerator();  // a random key (libsodium's randombytes)
  explicit TcpIsnGenerator(const SecretKey& key);

  // `tuple`: the connection's identifying bytes (addresses, ports; the
  // caller's own encoding, the same for every call about one connection).
  // `now_ns`: monotonic nanoseconds.
  [[nodiscard]] uint32_t isn(std::span<const uint8_t> tuple, int64_t now_ns) const;

 private:
  SecretKey key_{};
};

}  // namespace causeway::netstack
