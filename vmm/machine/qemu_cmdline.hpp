// The QEMU command line for a causeway guest, built from our options: a pure
// function (options → argv), unit-tested, with no file or process access.
//
// What it produces (q35; microvm swaps the -pci devices for their virtio-mmio
// "-device" forms, which QEMU describes to the guest through ACPI):
//   qemu-system-x86_64 -accel tcg|kvm [-cpu host]
//     -machine q35 | microvm,pit=on,rtc=on
//     -m <M>M -object memory-backend-memfd,id=mem0,size=<M>M,share=on -numa node,memdev=mem0
//         (vhost-user back ends map guest RAM: it must be a shareable fd)
//     -smp <n> -nodefaults -no-user-config -display none -no-reboot
//     -kernel K -initrd I -append "console=ttyS0 panic=-1 loglevel=4 rdinit=/sbin/causeway-agent … <user>"
//     -chardev file,id=console0,path=LOG -serial chardev:console0
//       (or -chardev socket,id=console0,path=SOCK: ConsoleLog, console_log.hpp, caps its size)
//     -chardev socket,id=net0-chr,path=S -netdev vhost-user,id=net0,chardev=net0-chr
//         -device virtio-net-pci,netdev=net0,mac=M,mrg_rxbuf=on[,host_mtu=N]
//       | -netdev stream,id=net0,addr.type=unix,addr.path=S -device virtio-net-pci,…   (--vm-net stream)
//     -chardev socket,id=vsock0-chr,path=V -device vhost-user-vsock-pci,chardev=vsock0-chr
//     [-device virtio-serial-pci -chardev socket,id=agent0-chr,path=A
//      -device virtserialport,chardev=agent0-chr,name=org.causeway.agent]   (debug agent transport)
//     -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0
//     [-drive file=IMG,format=raw,if=none,id=disk0,cache=writeback,discard=unmap
//      -device virtio-blk-pci,drive=disk0]            (a distribution's disk: /dev/vda, cw.root=/dev/vda)
//     [-device virtio-balloon-pci,free-page-reporting=on]   (free guest pages go back to the host)
// The disk is QEMU's own virtio-blk (the network and vsock devices stay
// causeway's): raw, because the distribution store keeps sparse raw ext4
// images; cache=writeback is QEMU's default and honours the guest's flushes
// (the guest's fsync reaches the host's disk); discard=unmap turns the
// guest's fstrim/discard into holes in the sparse image. QEMU's image lock
// (on by default) refuses a second VM on the same image. A balloon with free
// page reporting never inflates: the guest reports pages it frees and QEMU
// discards them (MADV_REMOVE / hole punch on the memfd), which is what
// gives an idle VM's memory back to the host — WSL's pageReporting.
// QEMU is the client of every socket: the back ends (causeway) listen before
// QEMU starts. With -no-reboot and panic=-1 a guest panic or reboot ends QEMU.
// Paths go through QEMU's option syntax, where ',' must be doubled.
//
// Thread safety: pure functions.
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/machine/accel.hpp"

namespace causeway::machine {

enum class MachineType { Q35, Microvm };
enum class NetAttachment {
  None,       // no NIC
  VhostUser,  // causeway's vhost-user virtio-net back end (the default)
  Stream,     // QEMU's own virtio-net over -netdev stream (--vm-net stream)
};

constexpr std::string_view kAgentInit = "/sbin/causeway-agent";
constexpr std::string_view kAgentSerialName = "org.causeway.agent";

// A raw disk image as the guest's first virtio-blk disk (/dev/vda).
struct DiskOptions {
  std::string path;                 // raw image file
  std::string cache = "writeback";  // QEMU cache mode: writeback | none | writethrough | directsync | unsafe
  bool read_only = false;
  bool root = true;  // tell the agent to boot it as / (cw.root=/dev/vda)
};

struct QemuOptions {
  std::string qemu = "qemu-system-x86_64";
  Accel accel = Accel::Tcg;
  MachineType machine = MachineType::Q35;
  unsigned cpus = 1;
  uint64_t memory_mib = 512;

  std::string kernel;
  std::string initrd;
  bool boot_agent = true;           // rdinit=/sbin/causeway-agent (false: the image's /init)
  std::string extra_cmdline;        // appended last (wins over ours: the kernel takes the last value)
  std::optional<uint64_t> tsc_khz;  // microvm under TCG: the guest cannot calibrate its TSC alone

  std::string console_log;     // serial console → this file ("" = no console)
  std::string console_socket;  // if set, the console goes to this unix socket instead (ConsoleLog
                               // listens there and writes console_log with a size cap)

  NetAttachment net = NetAttachment::VhostUser;
  std::string net_socket;  // vhost-user or stream unix socket (causeway listens)
  std::string mac = "52:54:00:12:34:56";
  uint32_t host_mtu = 0;  // virtio-net MTU offered to the guest (0 = none)

  std::string vsock_socket;         // vhost-user-vsock socket ("" = no vsock device)
  std::string agent_serial_socket;  // virtio-serial port for the agent ("" = none); also
                                    // sets cw.agent.transport=serial when there is no vsock
  bool rng = true;                  // virtio-rng fed from /dev/urandom
  std::optional<DiskOptions> disk;  // the guest's /dev/vda
  bool balloon = false;             // virtio-balloon (never inflated by us)
  bool free_page_reporting = true;  // with the balloon: free guest pages go back to the host
  // QEMU's own seccomp filter: -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,
  // resourcecontrol=deny (no obsolete syscalls, no set*uid/gid, no fork/exec, no affinity or
  // priority changes). It needs a QEMU built with libseccomp (Debian's is).
  bool sandbox = true;
  std::vector<std::string> extra_args;
};

// The -append value.
std::string kernel_cmdline(const QemuOptions& o);

// argv[0] is o.qemu. Errors name the option to fix.
boost::system::result<std::vector<std::string>, std::string> build_qemu_argv(const QemuOptions& o);

// "a,b" → "a,,b": QEMU's escaping for option values.
std::string qemu_escape(std::string_view value);

// ---------------------------------------------------------------- version
struct QemuVersion {
  int major = 0, minor = 0, micro = 0;
  friend auto operator<=>(const QemuVersion&, const QemuVersion&) = default;
};
constexpr QemuVersion kMinQemuVersion{7, 2, 0};  // -netdev stream, vhost-user-vsock with memfd

// Parses the first line of `qemu-system-x86_64 --version`
// ("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)").
std::optional<QemuVersion> parse_qemu_version(std::string_view text);
std::string to_string(const QemuVersion& v);

}  // namespace causeway::machine
