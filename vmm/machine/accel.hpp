// Accelerator probe: KVM where the host really has hardware virtualization,
// QEMU's TCG software emulation otherwise.
//
// The decision is a pure function of a few facts (probe_accel_facts() reads
// them), so every combination is unit-tested with fake facts. The rule that
// matters on our own machines: /dev/kvm may exist and answer but be PVM
// (module kvm_pvm, no vmx/svm) — it runs a stock kernel instruction by
// instruction and fails, so it counts as "no KVM" (docs: PLATFORM.md).
//
// Thread safety: pure functions; probe_accel_facts() only reads files.
#pragma once

#include <boost/system/result.hpp>
#include <string>
#include <string_view>

namespace causeway::machine {

enum class Accel { Kvm, Tcg };
enum class AccelRequest { Auto, Kvm, Tcg };

std::string_view to_string(Accel a);

struct AccelFacts {
  bool kvm_device = false;      // /dev/kvm exists
  bool kvm_accessible = false;  // and this user may open it read-write
  bool cpu_virt = false;        // vmx or svm among the CPU flags in /proc/cpuinfo
  bool kvm_pvm = false;         // /sys/module/kvm_pvm: the PVM flavour of KVM
};

struct AccelChoice {
  Accel accel = Accel::Tcg;
  // One line for the user when the choice is not the obvious one (TCG on
  // auto: why, and what would give KVM); empty otherwise.
  std::string notice;
};

// Auto picks KVM only when every fact allows it; Kvm fails with the reason
// (a start-up error naming the fix); Tcg always succeeds.
boost::system::result<AccelChoice, std::string> choose_accel(const AccelFacts& facts,
                                                             AccelRequest request = AccelRequest::Auto);

// True if a "flags" line of /proc/cpuinfo lists vmx or svm (whole words).
bool cpuinfo_has_virt(std::string_view cpuinfo);

// Reads the facts from /dev/kvm, /proc/cpuinfo and /sys/module.
AccelFacts probe_accel_facts();

}  // namespace causeway::machine
