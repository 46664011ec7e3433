// libFuzzer target: vhost-user framing and payload parsing (what a hostile
// or broken front-end could send), plus vsock header checks (what a guest sends).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "vmm/devices/vsock_packet.hpp"
#include "vmm/vhost_user/message.hpp"

using namespace causeway::vmm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vhost_user::MessageAssembler a;
  size_t off = 0;
  while (off < size) {
    // Feed in the chunk sizes the shell would read, capped by what is left.
    const size_t n = std::min(a.wanted(), size - off);
    if (a.feed({data + off, n}, {})) break;
    off += n;
    if (auto m = a.take()) {
      (void)vhost_user::parse_u64(*m);
      (void)vhost_user::parse_vring_state(*m);
      (void)vhost_user::parse_vring_addr(*m);
      (void)vhost_user::parse_vring_file(*m);
      (void)vhost_user::parse_mem_table(*m);
      (void)vhost_user::parse_config(*m);
    }
  }
  if (size >= vsock::kHdrSize) {
    const auto h = vsock::parse_header({data, vsock::kHdrSize});
    (void)vsock::check_guest_packet(h, size, 3);
  }
  return 0;
}
