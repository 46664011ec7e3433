#include "vmm/devices/net_offload.hpp"

#include "vmm/virtio_spec.hpp"

namespace causeway::vmm::net {

size_t header_len(uint64_t features) {
  return (features & (virtio::kFVersion1 | kFMrgRxbuf)) ? kHdrLen : kHdrLenLegacy;
}

}  // namespace causeway::vmm::net
