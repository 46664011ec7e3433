// Running the external tools a distribution needs (mkfs.ext4, mmdebstrap) and waiting for
// them in a way the user can interrupt.
//
// run_tool: fork + exec with stdin on /dev/null and stdout+stderr on one pipe, read line by
// line (each line to `on_line`, the last kOutputTail bytes kept for the error message).
// While it waits it checks `cancel` every 100 ms: when set (a SIGINT/SIGTERM handler sets
// it) the tool gets SIGTERM, then SIGKILL after 5 s, and run_tool returns "interrupted".
// The child has PR_SET_PDEATHSIG(SIGKILL): it never outlives a crashed causeway.
//
// find_tool: PATH, then /usr/sbin and /sbin — Debian keeps mkfs.ext4 in /sbin, which is not
// on an ordinary user's PATH.
//
// Thread safety: reentrant; run_tool blocks the calling thread.
#pragma once

#include <atomic>
#include <boost/system/result.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace causeway::distro {

struct ToolResult {
  bool signaled = false;
  int code = 0;        // exit status or signal number
  std::string output;  // the tail of what it printed
  [[nodiscard]] bool success() const { return !signaled && code == 0; }
  [[nodiscard]] std::string describe() const;  // "exited with status 1", "killed by signal 9"
};

std::optional<std::string> find_tool(const std::string& name);

// Runs argv (argv[0] a path or a name for find_tool). An error only when it could not be
// started or was interrupted; a failing tool is a ToolResult with success() false.
boost::system::result<ToolResult, std::string> run_tool(const std::vector<std::string>& argv,
                                                        const std::function<void(const std::string&)>& on_line,
                                                        const std::atomic<bool>* cancel);

}  // namespace causeway::distro
