#include "netstack/tcp_isn.hpp"

#include <sodium.h>

#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace causeway::netstack {

static_assert(crypto_shorthash_KEYBYTES == 16 && crypto_shorthash_BYTES == 8, "crypto_shorthash is SipHash-2-4");

namespace {
void init_sodium() {
  // Idempotent and thread-safe; -1 only when the library cannot work at all
  // (no random source), which is our environment's invariant, not the guest's.
  if (sodium_init() < 0) {
    spdlog::critical("libsodium failed to initialise (no random source?)");
    std::abort();
  }
}
}  // namespace

TcpIsnGenerator::TcpIsnGenerator() {
  init_sodium();
  randombytes_buf(key_.data(), key_.size());
}

TcpIsnGenerator::TcpIsnGenerator(const SecretKey& key) : key_(key) { init_sodium(); }

uint32_t TcpIsnGenerator::isn(std::span<const uint8_t> tuple, int64_t now_ns) const {
  uint8_t hash[crypto_shorthash_BYTES];
  crypto_shorthash(hash, tuple.data(), tuple.size(), key_.data());
  uint32_t f = 0;
  std::memcpy(&f, hash, sizeof f);
  const auto m = static_cast<uint32_t>(static_cast<uint64_t>(now_ns / kTickNs));  // wraps every ~4.8 h
  return m + f;
}

}  // namespace causeway::netstack
