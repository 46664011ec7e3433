// QEMU argv builder and version parser; see qemu_cmdline.hpp.
#include "vmm/machine/qemu_cmdline.hpp"

#include <algorithm>
#include <charconv>

namespace causeway::machine {
namespace {

constexpr unsigned kMaxCpus = 255;            // q35 without x2APIC/IOMMU setup
constexpr uint64_t kMinMemoryMib = 64;        // the cloud kernel + initramfs need about this
constexpr uint64_t kMaxMemoryMib = 1u << 20;  // 1 TiB: a typo guard, not a host limit

bool valid_mac(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    const char c = mac[i];
    if (i % 3 == 2) {
      if (c != ':') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  // Bit 0 of the first octet is the multicast bit: a NIC address must be unicast.
  const int first = std::stoi(std::string(mac.substr(0, 2)), nullptr, 16);
  return (first & 1) == 0;
}

}  // namespace

std::string qemu_escape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

std::string kernel_cmdline(const QemuOptions& o) {
  // panic=-1: reboot at once on panic, which -no-reboot turns into QEMU exiting.
  std::string c = "console=ttyS0 panic=-1 loglevel=4";
  if (o.boot_agent) c += " rdinit=" + std::string(kAgentInit);
  if (o.boot_agent && o.vsock_socket.empty() && !o.agent_serial_socket.empty()) c += " cw.agent.transport=serial";
  if (o.disk && o.disk->root) c += " cw.root=/dev/vda";
  if (o.machine == MachineType::Microvm && o.tsc_khz) c += " tsc_early_khz=" + std::to_string(*o.tsc_khz);
  if (!o.extra_cmdline.empty()) c += " " + o.extra_cmdline;
  return c;
}

boost::system::result<std::vector<std::string>, std::string> build_qemu_argv(const QemuOptions& o) {
  if (o.qemu.empty()) return std::string("no QEMU binary given");
  if (o.kernel.empty())
    return std::string("no guest kernel: pass --kernel or build the default image (scripts/build-guest.sh)");
  if (o.cpus < 1 || o.cpus > kMaxCpus)
    return "--cpus " + std::to_string(o.cpus) + " is out of range (1–" + std::to_string(kMaxCpus) + ")";
  if (o.memory_mib < kMinMemoryMib || o.memory_mib > kMaxMemoryMib)
    return "--memory " + std::to_string(o.memory_mib) + " MiB is out of range (" + std::to_string(kMinMemoryMib) +
           " MiB – 1 TiB)";
  if (o.net != NetAttachment::None) {
    if (o.net_socket.empty()) return std::string("the network attachment needs a socket path");
    if (!valid_mac(o.mac)) return "invalid MAC address '" + o.mac + "' (want a unicast xx:xx:xx:xx:xx:xx)";
  }
  if (o.host_mtu != 0 && (o.host_mtu < 68 || o.host_mtu > 65535))
    return "MTU " + std::to_string(o.host_mtu) + " is out of range (68–65535)";
  if (o.boot_agent && o.vsock_socket.empty() && o.agent_serial_socket.empty())
    return std::string("the guest agent needs a channel to the host: a vsock socket or an agent serial socket");
  if (o.disk) {
    if (o.disk->path.empty()) return std::string("--disk needs an image path");
    static constexpr std::string_view kCacheModes[] = {"writeback", "none", "writethrough", "directsync", "unsafe"};
    if (std::find(std::begin(kCacheModes), std::end(kCacheModes), o.disk->cache) == std::end(kCacheModes))
      return "disk cache mode '" + o.disk->cache + "' is not one of writeback, none, writethrough, directsync, unsafe";
  }

  const bool mmio = o.machine == MachineType::Microvm;
  auto dev = [mmio](std::string_view base) { return std::string(base) + (mmio ? "-device" : "-pci"); };
  const std::string mem = std::to_string(o.memory_mib) + "M";

  std::vector<std::string> a{o.qemu};
  auto add = [&a](std::initializer_list<std::string> args) { a.insert(a.end(), args); };
  if (o.accel == Accel::Kvm) {
    add({"-accel", "kvm", "-cpu", "host"});
  } else {
    add({"-accel", "tcg"});
  }
  // microvm under TCG: without the PIT and RTC the kernel cannot calibrate the TSC and
  // hangs early in boot (found with the e2e tests; see tests/e2e/vm_serve_test.sh).
  add({"-machine", mmio ? "microvm,pit=on,rtc=on" : "q35"});
  add({"-m", mem, "-object", "memory-backend-memfd,id=mem0,size=" + mem + ",share=on", "-numa", "node,memdev=mem0"});
  add({"-smp", std::to_string(o.cpus)});
  add({"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"});
  if (o.sandbox) add({"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"});
  add({"-kernel", o.kernel});
  if (!o.initrd.empty()) add({"-initrd", o.initrd});
  add({"-append", kernel_cmdline(o)});
  if (!o.console_socket.empty()) {
    add({"-chardev", "socket,id=console0,path=" + qemu_escape(o.console_socket), "-serial", "chardev:console0"});
  } else if (!o.console_log.empty()) {
    add({"-chardev", "file,id=console0,path=" + qemu_escape(o.console_log), "-serial", "chardev:console0"});
  }

  std::string nic = dev("virtio-net") + ",netdev=net0,mac=" + o.mac;
  if (o.host_mtu) nic += ",host_mtu=" + std::to_string(o.host_mtu);
  switch (o.net) {
    case NetAttachment::None: break;
    case NetAttachment::VhostUser:
      // Offloads (csum, TSO) are whatever the back end offers; merged rx buffers are
      // asked for explicitly because the back end's receive path expects them.
      // vectors=0 (q35 only): QEMU 7.2 under TCG dereferences NULL in
      // msix_set_vector_notifiers when a vhost-user virtio-net-pci starts with
      // MSI-X (seen under gdb); legacy INTx costs nothing at our rates.
      add({"-chardev", "socket,id=net0-chr,path=" + qemu_escape(o.net_socket) + ",reconnect=1", "-netdev",
           "vhost-user,id=net0,chardev=net0-chr", "-device",
           nic + ",mrg_rxbuf=on" + (o.machine == MachineType::Q35 ? ",vectors=0" : "")});
      break;
    case NetAttachment::Stream:
      add({"-netdev", "stream,id=net0,addr.type=unix,addr.path=" + qemu_escape(o.net_socket), "-device", nic});
      break;
  }
  if (!o.vsock_socket.empty()) {
    // The guest CID comes from the back end (vhost-user GET_CONFIG), not from QEMU.
    add({"-chardev", "socket,id=vsock0-chr,path=" + qemu_escape(o.vsock_socket), "-device",
         dev("vhost-user-vsock") + ",chardev=vsock0-chr"});
  }
  if (!o.agent_serial_socket.empty()) {
    add({"-device", dev("virtio-serial"), "-chardev", "socket,id=agent0-chr,path=" + qemu_escape(o.agent_serial_socket),
         "-device", "virtserialport,chardev=agent0-chr,name=" + std::string(kAgentSerialName)});
  }
  if (o.rng) {
    add({"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", dev("virtio-rng") + ",rng=rng0"});
  }
  if (o.disk) {
    std::string drive = "file=" + qemu_escape(o.disk->path) + ",format=raw,if=none,id=disk0,cache=" + o.disk->cache;
    drive += o.disk->read_only ? ",readonly=on" : ",discard=unmap";
    add({"-drive", drive, "-device", dev("virtio-blk") + ",drive=disk0"});
  }
  if (o.balloon) {
    add({"-device", dev("virtio-balloon") + (o.free_page_reporting ? ",free-page-reporting=on" : "")});
  }
  a.insert(a.end(), o.extra_args.begin(), o.extra_args.end());
  return a;
}

std::optional<QemuVersion> parse_qemu_version(std::string_view text) {
  constexpr std::string_view kPrefix = "QEMU emulator version ";
  const size_t at = text.find(kPrefix);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view s = text.substr(at + kPrefix.size());
  QemuVersion v;
  int* parts[] = {&v.major, &v.minor, &v.micro};
  for (size_t i = 0; i < 3; ++i) {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *parts[i]);
    if (ec != std::errc()) return i >= 2 ? std::optional(v) : std::nullopt;  // "8.0" has no micro
    s.remove_prefix(static_cast<size_t>(p - s.data()));
    if (i < 2) {
      if (s.empty() || s.front() != '.') return i == 1 ? std::optional(v) : std::nullopt;
      s.remove_prefix(1);
    }
  }
  return v;
}

std::string to_string(const QemuVersion& v) {
  return std::to_string(v.major) + "." + std::to_string(v.minor) + "." + std::to_string(v.micro);
}

}  // namespace causeway::machine
