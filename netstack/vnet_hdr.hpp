// The virtio-net header on a tap with IFF_VNET_HDR, under netstack's names.
//
// The header's codec, its validation and the software completion of its
// offloads live in the wire toolkit (base/vnet_hdr.hpp: format, what is
// refused and why), shared with the vhost-user virtio-net device. The tap is
// given TUNSETVNETHDRSZ 12 (kVnetHdrLen) and TUNSETVNETLE; the engine and
// mirrored links check what it sends with check_vnet_hdr and finish it with
// finish_in_software for the parts that know nothing of offloads (libslirp).
//
// Thread safety: pure functions.
#pragma once

#include "base/vnet_hdr.hpp"
#include "netstack/frame.hpp"

namespace causeway::netstack {

using wire::check_vnet_hdr;
using wire::finish_in_software;
using wire::GuestOffload;
using wire::kMaxGsoFrame;
using wire::kVnetFDataValid;
using wire::kVnetFNeedsCsum;
using wire::kVnetGsoEcn;
using wire::kVnetGsoNone;
using wire::kVnetGsoTcp4;
using wire::kVnetGsoTcp6;
using wire::kVnetHdrLen;
using wire::read_vnet_hdr;
using wire::VnetCheck;
using wire::VnetHdr;
using wire::VnetVerdict;
using wire::write_vnet_hdr;

}  // namespace causeway::netstack
