// Seed inputs for agent_fuzz_protocol, written into the directory given as argv[1]: valid
// streams and payloads of the mirror messages (and NetConfig/Run), so the fuzzer starts
// inside MirrorApply/MirrorReport's deep fields instead of having to find their shape.
// Input layout as the target reads it: byte 0 (bit 0 = guest→host, bit 1 = one payload),
// byte 1 (the split point, or the payload's type), then the bytes.
#include <sys/socket.h>
#include <fstream>
#include <string>
#include "vmm/agent/protocol.hpp"
using namespace causeway::agent;
namespace m = causeway::netstack::mirror;
static std::string dir;
static void put(const char* name, uint8_t b0, uint8_t b1, const std::vector<uint8_t>& bytes) {
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.put(static_cast<char>(b0));
  f.put(static_cast<char>(b1));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
int main(int argc, char** argv) {
  if (argc != 2) return 2;
  dir = argv[1];
  m::NetState st;
  m::HostLink l;
  l.ifindex = 3;
  l.name = "lan0";
  l.mac = m::MacAddress{2, 0x43, 0x57, 0x4d, 0, 3};
  l.mtu = 1500;
  l.flags = 1;
  m::HostLink v;
  v.ifindex = 9;
  v.name = "vpn0";
  v.mtu = 1380;
  v.flags = 1;
  st.links = {l, v};
  m::HostAddress a;
  a.link = "lan0";
  a.local = *m::IpAddress::parse("192.168.77.2");
  a.prefix_len = 24;
  a.broadcast = m::IpAddress::parse("192.168.77.255");
  m::HostAddress a6;
  a6.link = "lan0";
  a6.local = *m::IpAddress::parse("fd77::2");
  a6.prefix_len = 64;
  m::HostAddress p;
  p.link = "vpn0";
  p.local = *m::IpAddress::parse("10.8.0.2");
  p.peer = m::IpAddress::parse("10.8.0.1");
  p.prefix_len = 32;
  st.addresses = {a, a6, p};
  m::HostRoute d;
  d.family = AF_INET;
  d.dst = *m::IpAddress::parse("0.0.0.0");
  d.priority = 100;
  d.nexthops = {{"lan0", m::IpAddress::parse("192.168.77.1"), 0}};
  m::HostRoute mp;
  mp.family = AF_INET;
  mp.table = 1000;
  mp.dst = *m::IpAddress::parse("10.9.0.0");
  mp.dst_len = 16;
  mp.nexthops = {{"vpn0", std::nullopt, 0}, {"lan0", m::IpAddress::parse("192.168.77.9"), 4}};
  m::HostRoute r6;
  r6.family = AF_INET6;
  r6.dst = *m::IpAddress::parse("::");
  r6.mtu = 1400;
  r6.nexthops = {{"lan0", m::IpAddress::parse("fd77::1"), 0}};
  st.routes = {d, mp, r6};
  std::vector<uint8_t> b;
  encode_into(Hello{}, b);
  encode_into(MirrorApply{1, st}, b);
  put("mirror_apply", 0, 0, b);
  MirrorReport rep;
  rep.generation = 1;
  rep.converged = true;
  rep.changes = 7;
  rep.passes = 2;
  rep.errors = {{"add route default dev lan0", "File exists"}};
  rep.errors_total = 1;
  rep.actual = st;
  rep.unmanaged = {"eth0", "lo"};
  std::vector<uint8_t> g;
  encode_into(Ready{kProtocolVersion, "a", "k", 1}, g);
  encode_into(rep, g);
  put("mirror_report", 1, 0, g);
  NetConfig c;
  c.mtu = 1500;
  c.internal = true;
  c.addresses = {{IpAddr::v4(10, 0, 2, 15), 24}};
  c.dns_servers = {IpAddr::v4(10, 0, 2, 3)};
  c.search_domains = {"corp.example"};
  std::vector<uint8_t> n;
  encode_into(c, n);
  encode_into(Run{{"sh", "-c", "true"}, {"A=b"}, "/", false, 0, 0, ""}, n);
  put("netconfig_run", 0, 0, n);
  std::vector<uint8_t> v3;
  encode_into(Hello{}, v3);
  encode_into(DnsConfig{{IpAddr::v4(10, 0, 2, 3), *IpAddr::parse("fd00::3")}, {"corp.example"}}, v3);
  encode_into(Run{{"id", "-un"}, {"LANG=C.UTF-8"}, "", true, 24, 80, "alice"}, v3);
  put("dnsconfig_run_user", 0, 0, v3);
  std::vector<uint8_t> dl = encode(DnsConfig{{IpAddr::v4(10, 0, 2, 3)}, {"a.example", "b.example"}});
  put("dnsconfig_payload", 2, 0x0b, std::vector<uint8_t>(dl.begin() + 8, dl.end()));
  std::vector<uint8_t> pl = encode(MirrorApply{2, st});
  put("mirror_apply_payload", 2, 0x0a, std::vector<uint8_t>(pl.begin() + 8, pl.end()));
  std::vector<uint8_t> rl = encode(rep);
  put("mirror_report_payload", 3, 0x49, std::vector<uint8_t>(rl.begin() + 8, rl.end()));
}
