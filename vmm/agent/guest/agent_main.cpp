// causeway-agent: the guest agent, PID 1 of a causeway guest (boot.hpp for
// what it does at boot, agent.hpp for the session with the host). Linked
// statically: the initramfs has no libc of its own.
#include "vmm/agent/guest/agent.hpp"

int main(int argc, char** argv) { return causeway::agent::guest::agent_main(argc, argv); }
