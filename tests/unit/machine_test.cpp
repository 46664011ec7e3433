// vmm/machine: the accelerator decision over fake facts, the QEMU command
// line builder and QEMU version parsing. Spawning, reaping and stopping with
// real processes are in tests/component/qemu_process_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>

#include "vmm/machine/accel.hpp"
#include "vmm/machine/qemu_cmdline.hpp"

namespace causeway::machine {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- accel
constexpr AccelFacts kRealKvm{.kvm_device = true, .kvm_accessible = true, .cpu_virt = true, .kvm_pvm = false};

TEST(AccelProbe, RealKvmIsChosenSilently) {
  const auto c = choose_accel(kRealKvm);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->accel, Accel::Kvm);
  EXPECT_EQ(c->notice, "");
}

TEST(AccelProbe, PvmCountsAsNoKvmAndSaysWhy) {
  AccelFacts f = kRealKvm;
  f.kvm_pvm = true;
  f.cpu_virt = false;  // what these machines look like
  const auto c = choose_accel(f);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->accel, Accel::Tcg);
  EXPECT_NE(c->notice.find("kvm_pvm"), std::string::npos);
  EXPECT_EQ(c->notice.find('\n'), std::string::npos);  // one line
  // Even with vmx shown, PVM is not used.
  f.cpu_virt = true;
  EXPECT_EQ(choose_accel(f)->accel, Accel::Tcg);
}

TEST(AccelProbe, EachMissingFactFallsBackToTcgWithItsFix) {
  struct Case {
    AccelFacts facts;
    const char* fix;
  };
  const Case cases[] = {
      {{.kvm_device = false, .kvm_accessible = false, .cpu_virt = true, .kvm_pvm = false}, "modprobe kvm_intel"},
      {{.kvm_device = true, .kvm_accessible = false, .cpu_virt = true, .kvm_pvm = false}, "group kvm"},
      {{.kvm_device = true, .kvm_accessible = true, .cpu_virt = false, .kvm_pvm = false}, "vmx/svm"},
      {{}, "vmx/svm"},
  };
  for (const auto& c : cases) {
    const auto r = choose_accel(c.facts);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->accel, Accel::Tcg);
    EXPECT_NE(r->notice.find(c.fix), std::string::npos) << r->notice;
    EXPECT_NE(r->notice.find("TCG"), std::string::npos);
  }
}

TEST(AccelProbe, ExplicitKvmWithoutKvmIsAnActionableError) {
  AccelFacts f = kRealKvm;
  f.kvm_accessible = false;
  const auto r = choose_accel(f, AccelRequest::Kvm);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("usermod -aG kvm"), std::string::npos);
  EXPECT_NE(r.error().find("--accel tcg"), std::string::npos);
  EXPECT_EQ(choose_accel(kRealKvm, AccelRequest::Kvm)->accel, Accel::Kvm);
}

TEST(AccelProbe, ExplicitTcgIsHonouredEvenWithKvm) {
  const auto r = choose_accel(kRealKvm, AccelRequest::Tcg);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->accel, Accel::Tcg);
  EXPECT_EQ(r->notice, "");
}

TEST(AccelProbe, CpuinfoFlagsAreMatchedAsWholeWords) {
  EXPECT_TRUE(cpuinfo_has_virt("processor\t: 0\nflags\t\t: fpu vme vmx sse\n"));
  EXPECT_TRUE(cpuinfo_has_virt("flags\t\t: fpu svm\n"));
  EXPECT_FALSE(cpuinfo_has_virt("flags\t\t: fpu vmxnope svmx\n"));
  EXPECT_FALSE(cpuinfo_has_virt("model name\t: vmx svm inside a model name\nflags : fpu\n"));
  EXPECT_FALSE(cpuinfo_has_virt(""));
}

TEST(AccelProbe, ProbingThisHostDoesNotCrashAndIsConsistent) {
  const AccelFacts f = probe_accel_facts();
  if (!f.kvm_device) {
    EXPECT_FALSE(f.kvm_accessible);
  }
  EXPECT_TRUE(choose_accel(f));
}

// ---------------------------------------------------------------- command line
QemuOptions base_options() {
  QemuOptions o;
  o.kernel = "/g/vmlinuz";
  o.initrd = "/g/initramfs.cpio.gz";
  o.cpus = 2;
  o.memory_mib = 1024;
  o.console_log = "/run/cw/console.log";
  o.net_socket = "/run/cw/net.sock";
  o.vsock_socket = "/run/cw/vsock.sock";
  return o;
}

// True if `seq` appears contiguously in `argv`.
bool has_seq(const std::vector<std::string>& argv, std::initializer_list<std::string> seq) {
  const std::vector<std::string> s(seq);
  return std::search(argv.begin(), argv.end(), s.begin(), s.end()) != argv.end();
}

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += a + " ";
  return s;
}

TEST(QemuCmdline, Q35WithVhostUserNetAndVsock) {
  const auto r = build_qemu_argv(base_options());
  ASSERT_TRUE(r) << r.error();
  const auto& a = *r;
  SCOPED_TRACE(joined(a));
  EXPECT_EQ(a[0], "qemu-system-x86_64");
  EXPECT_TRUE(has_seq(a, {"-accel", "tcg"}));
  EXPECT_TRUE(has_seq(a, {"-machine", "q35"}));
  EXPECT_TRUE(has_seq(
      a, {"-m", "1024M", "-object", "memory-backend-memfd,id=mem0,size=1024M,share=on", "-numa", "node,memdev=mem0"}));
  EXPECT_TRUE(has_seq(a, {"-smp", "2"}));
  EXPECT_TRUE(has_seq(a, {"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"}));
  // QEMU confines itself too (issue 16): no obsolete syscalls, no privilege changes, no spawning.
  EXPECT_TRUE(has_seq(a, {"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}));
  EXPECT_TRUE(has_seq(a, {"-kernel", "/g/vmlinuz"}));
  EXPECT_TRUE(has_seq(a, {"-initrd", "/g/initramfs.cpio.gz"}));
  EXPECT_TRUE(has_seq(a, {"-chardev", "file,id=console0,path=/run/cw/console.log", "-serial", "chardev:console0"}));
  // reconnect=1: the net back end may restart; vectors=0: QEMU 7.2/TCG crashes starting
  // a vhost-user virtio-net-pci with MSI-X (see qemu_cmdline.cpp).
  EXPECT_TRUE(has_seq(a, {"-chardev", "socket,id=net0-chr,path=/run/cw/net.sock,reconnect=1", "-netdev",
                          "vhost-user,id=net0,chardev=net0-chr", "-device",
                          "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,mrg_rxbuf=on,vectors=0"}));
  EXPECT_TRUE(has_seq(a, {"-chardev", "socket,id=vsock0-chr,path=/run/cw/vsock.sock", "-device",
                          "vhost-user-vsock-pci,chardev=vsock0-chr"}));
  EXPECT_TRUE(has_seq(a, {"-device", "virtio-rng-pci,rng=rng0"}));
  EXPECT_EQ(std::count(a.begin(), a.end(), "-cpu"), 0);
  EXPECT_EQ(joined(a).find("virtserialport"), std::string::npos);
}

TEST(QemuCmdline, KernelCommandLineBootsTheAgentAndEndsWithTheUsersWords) {
  QemuOptions o = base_options();
  o.extra_cmdline = "loglevel=7 cw.agent.debug=1";
  const auto a = *build_qemu_argv(o);
  const auto it = std::find(a.begin(), a.end(), "-append");
  ASSERT_NE(it, a.end());
  EXPECT_EQ(*(it + 1), "console=ttyS0 panic=-1 loglevel=4 rdinit=/sbin/causeway-agent loglevel=7 cw.agent.debug=1");
  o.boot_agent = false;
  o.extra_cmdline = "cw.mode=dhcp-test";
  EXPECT_EQ(kernel_cmdline(o), "console=ttyS0 panic=-1 loglevel=4 cw.mode=dhcp-test");
}

TEST(QemuCmdline, MicrovmUsesMmioDevicesAndTheTscHint) {
  QemuOptions o = base_options();
  o.machine = MachineType::Microvm;
  o.tsc_khz = 2'600'000;
  const auto a = *build_qemu_argv(o);
  SCOPED_TRACE(joined(a));
  EXPECT_TRUE(has_seq(a, {"-machine", "microvm,pit=on,rtc=on"}));
  EXPECT_NE(joined(a).find("virtio-net-device,netdev=net0"), std::string::npos);
  EXPECT_NE(joined(a).find("vhost-user-vsock-device,chardev=vsock0-chr"), std::string::npos);
  EXPECT_NE(joined(a).find("virtio-rng-device,rng=rng0"), std::string::npos);
  EXPECT_EQ(joined(a).find("-pci"), std::string::npos);
  EXPECT_NE(kernel_cmdline(o).find("tsc_early_khz=2600000"), std::string::npos);
  o.machine = MachineType::Q35;
  EXPECT_EQ(kernel_cmdline(o).find("tsc_early_khz"), std::string::npos);
}

TEST(QemuCmdline, StreamVariantUsesQemusOwnVirtioNet) {
  QemuOptions o = base_options();
  o.net = NetAttachment::Stream;
  o.host_mtu = 65520;
  const auto a = *build_qemu_argv(o);
  SCOPED_TRACE(joined(a));
  EXPECT_TRUE(has_seq(a, {"-netdev", "stream,id=net0,addr.type=unix,addr.path=/run/cw/net.sock", "-device",
                          "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,host_mtu=65520"}));
  EXPECT_EQ(joined(a).find("vhost-user,id=net0"), std::string::npos);
}

TEST(QemuCmdline, KvmAddsTheHostCpu) {
  QemuOptions o = base_options();
  o.accel = Accel::Kvm;
  EXPECT_TRUE(has_seq(*build_qemu_argv(o), {"-accel", "kvm", "-cpu", "host"}));
}

TEST(QemuCmdline, AgentSerialTransportAddsThePortAndTellsTheAgent) {
  QemuOptions o = base_options();
  o.vsock_socket.clear();
  o.agent_serial_socket = "/tmp/a,b/agent.sock";
  o.net = NetAttachment::None;
  const auto a = *build_qemu_argv(o);
  SCOPED_TRACE(joined(a));
  EXPECT_TRUE(has_seq(a, {"-device", "virtio-serial-pci", "-chardev", "socket,id=agent0-chr,path=/tmp/a,,b/agent.sock",
                          "-device", "virtserialport,chardev=agent0-chr,name=org.causeway.agent"}));
  EXPECT_NE(kernel_cmdline(o).find("cw.agent.transport=serial"), std::string::npos);
  EXPECT_EQ(joined(a).find("netdev"), std::string::npos);
  // With vsock present, vsock stays the agent's transport.
  o.vsock_socket = "/v.sock";
  EXPECT_EQ(kernel_cmdline(o).find("cw.agent.transport"), std::string::npos);
}

TEST(QemuCmdline, CommasInPathsAreDoubled) {
  QemuOptions o = base_options();
  o.console_log = "/tmp/x,y/console.log";
  o.net_socket = "/tmp/x,y/net.sock";
  const auto s = joined(*build_qemu_argv(o));
  EXPECT_NE(s.find("path=/tmp/x,,y/console.log"), std::string::npos);
  EXPECT_NE(s.find("path=/tmp/x,,y/net.sock"), std::string::npos);
  EXPECT_EQ(qemu_escape(",a,,b"), ",,a,,,,b");
}

TEST(QemuCmdline, BadOptionsAreRejectedNamingTheOption) {
  auto err = [](auto mutate) {
    QemuOptions o = base_options();
    mutate(o);
    const auto r = build_qemu_argv(o);
    return r ? std::string() : r.error();
  };
  EXPECT_NE(err([](QemuOptions& o) { o.kernel.clear(); }).find("build-guest.sh"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.cpus = 0; }).find("--cpus"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.cpus = 1000; }).find("--cpus"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.memory_mib = 16; }).find("--memory"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.mac = "01:00:5e:00:00:01"; }).find("unicast"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.mac = "52:54:00:12:34"; }).find("MAC"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.net_socket.clear(); }).find("socket"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.host_mtu = 10; }).find("MTU"), std::string::npos);
  EXPECT_NE(err([](QemuOptions& o) { o.vsock_socket.clear(); }).find("channel"), std::string::npos);
  EXPECT_EQ(err([](QemuOptions& o) {
              o.vsock_socket.clear();
              o.boot_agent = false;
            }),
            "");
}

TEST(QemuCmdline, RawDiskIsVirtioBlkAndTheAgentBootsIt) {
  QemuOptions o = base_options();
  o.disk = DiskOptions{.path = "/data/distros/deb,1/rootfs.ext4"};
  const auto a = *build_qemu_argv(o);
  SCOPED_TRACE(joined(a));
  EXPECT_TRUE(has_seq(a, {"-drive",
                          "file=/data/distros/deb,,1/rootfs.ext4,format=raw,if=none,id=disk0,cache=writeback,"
                          "discard=unmap",
                          "-device", "virtio-blk-pci,drive=disk0"}));
  EXPECT_NE(kernel_cmdline(o).find(" cw.root=/dev/vda"), std::string::npos);
  // The user's words still come last (and win).
  o.extra_cmdline = "cw.root=/dev/vdb";
  EXPECT_TRUE(kernel_cmdline(o).ends_with("cw.root=/dev/vda cw.root=/dev/vdb"));
  // A data disk that is not the root: no cw.root; read-only: no discard.
  o.extra_cmdline.clear();
  o.disk->root = false;
  o.disk->read_only = true;
  o.disk->cache = "none";
  EXPECT_EQ(kernel_cmdline(o).find("cw.root"), std::string::npos);
  EXPECT_NE(joined(*build_qemu_argv(o)).find("id=disk0,cache=none,readonly=on "), std::string::npos);
  o.machine = MachineType::Microvm;
  EXPECT_NE(joined(*build_qemu_argv(o)).find("virtio-blk-device,drive=disk0"), std::string::npos);
}

TEST(QemuCmdline, NoDiskNoBalloonByDefault) {
  const auto s = joined(*build_qemu_argv(base_options()));
  EXPECT_EQ(s.find("-drive"), std::string::npos);
  EXPECT_EQ(s.find("balloon"), std::string::npos);
  EXPECT_EQ(s.find("cw.root"), std::string::npos);
}

TEST(QemuCmdline, BalloonReportsFreePagesUnlessAskedNot) {
  QemuOptions o = base_options();
  o.balloon = true;
  EXPECT_TRUE(has_seq(*build_qemu_argv(o), {"-device", "virtio-balloon-pci,free-page-reporting=on"}));
  o.free_page_reporting = false;
  EXPECT_TRUE(has_seq(*build_qemu_argv(o), {"-device", "virtio-balloon-pci"}));
  o.machine = MachineType::Microvm;
  o.free_page_reporting = true;
  EXPECT_TRUE(has_seq(*build_qemu_argv(o), {"-device", "virtio-balloon-device,free-page-reporting=on"}));
}

TEST(QemuCmdline, BadDiskOptionsAreRejected) {
  QemuOptions o = base_options();
  o.disk = DiskOptions{};
  ASSERT_FALSE(build_qemu_argv(o));
  EXPECT_NE(build_qemu_argv(o).error().find("--disk"), std::string::npos);
  o.disk->path = "/x.img";
  o.disk->cache = "fast";
  ASSERT_FALSE(build_qemu_argv(o));
  EXPECT_NE(build_qemu_argv(o).error().find("writeback"), std::string::npos);
}

TEST(QemuVersionParse, ReadsDebianAndUpstreamFormats) {
  auto v = parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright ...");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, (QemuVersion{7, 2, 22}));
  EXPECT_GE(*v, kMinQemuVersion);
  v = parse_qemu_version("QEMU emulator version 8.0\n");
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, (QemuVersion{8, 0, 0}));
  v = parse_qemu_version("QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6)");
  ASSERT_TRUE(v);
  EXPECT_LT(*v, kMinQemuVersion);
  EXPECT_FALSE(parse_qemu_version("qemu-img version 7.2.0"));
  EXPECT_FALSE(parse_qemu_version("QEMU emulator version x.y"));
  EXPECT_FALSE(parse_qemu_version(""));
  EXPECT_EQ(to_string(QemuVersion{7, 2, 0}), "7.2.0");
}

}  // namespace
}  // namespace causeway::machine
