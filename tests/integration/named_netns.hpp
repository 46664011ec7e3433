// A named network namespace (/run/netns/NAME) for the life of the object,
// made and deleted with iproute2. Needs root. Shared by the tests that build
// their own namespaces (attach_test, mirror_test).
//
// Thread safety: confined to the creating thread.
#pragma once

#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

namespace causeway::integration {

class NamedNetns {
 public:
  explicit NamedNetns(std::string name) : name_(std::move(name)) { created_ = run({"ip", "netns", "add", name_}); }
  NamedNetns(const NamedNetns&) = delete;
  NamedNetns& operator=(const NamedNetns&) = delete;
  ~NamedNetns() {
    if (ok()) run({"ip", "netns", "delete", name_});
  }
  bool ok() const { return created_.status == 0; }
  const RunResult& created() const { return created_; }
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // ip netns exec NAME ARGV...
  std::vector<std::string> exec(const std::vector<std::string>& argv) const {
    std::vector<std::string> out{"ip", "netns", "exec", name_};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
  // ip -n NAME ARGS...
  std::vector<std::string> ip(const std::vector<std::string>& args) const {
    std::vector<std::string> out{"ip", "-n", name_};
    out.insert(out.end(), args.begin(), args.end());
    return out;
  }

 private:
  std::string name_;
  RunResult created_;
};

}  // namespace causeway::integration
