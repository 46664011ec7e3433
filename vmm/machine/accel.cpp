// Accelerator choice; see accel.hpp.
#include "vmm/machine/accel.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace causeway::machine {

std::string_view to_string(Accel a) { return a == Accel::Kvm ? "kvm" : "tcg"; }

namespace {

// Why KVM cannot be used, or "" if it can. Ordered from the most fundamental fact.
std::string kvm_blocker(const AccelFacts& f) {
  if (f.kvm_pvm) return "/dev/kvm is PVM (module kvm_pvm), which cannot run a stock guest kernel at a usable speed";
  if (!f.cpu_virt)
    return "the CPU shows no hardware virtualization (no vmx/svm in /proc/cpuinfo; enable VT-x/AMD-V, or "
           "nested virtualization for a VM)";
  if (!f.kvm_device) return "/dev/kvm does not exist (load kvm_intel or kvm_amd: modprobe kvm_intel)";
  if (!f.kvm_accessible)
    return "/dev/kvm is not accessible to this user (add the user to group kvm: usermod -aG kvm $USER, then log in "
           "again)";
  return {};
}

}  // namespace

boost::system::result<AccelChoice, std::string> choose_accel(const AccelFacts& facts, AccelRequest request) {
  if (request == AccelRequest::Tcg) return AccelChoice{Accel::Tcg, {}};
  const std::string blocker = kvm_blocker(facts);
  if (blocker.empty()) return AccelChoice{Accel::Kvm, {}};
  if (request == AccelRequest::Kvm) return "cannot use KVM: " + blocker + " (or choose --accel tcg)";
  return AccelChoice{Accel::Tcg, "using TCG software emulation (slow): " + blocker};
}

bool cpuinfo_has_virt(std::string_view cpuinfo) {
  size_t pos = 0;
  while (pos < cpuinfo.size()) {
    size_t eol = cpuinfo.find('\n', pos);
    if (eol == std::string_view::npos) eol = cpuinfo.size();
    const std::string_view line = cpuinfo.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.starts_with("flags")) continue;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::istringstream words{std::string(line.substr(colon + 1))};
    std::string w;
    while (words >> w)
      if (w == "vmx" || w == "svm") return true;
  }
  return false;
}

AccelFacts probe_accel_facts() {
  AccelFacts f;
  struct stat st {};
  f.kvm_device = stat("/dev/kvm", &st) == 0 && S_ISCHR(st.st_mode);
  if (f.kvm_device) {
    const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    f.kvm_accessible = fd >= 0;
    if (fd >= 0) close(fd);
  }
  std::ifstream in("/proc/cpuinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  f.cpu_virt = cpuinfo_has_virt(ss.str());
  f.kvm_pvm = stat("/sys/module/kvm_pvm", &st) == 0;
  return f;
}

}  // namespace causeway::machine
