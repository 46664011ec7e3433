// The host ↔ guest agent protocol: message types, a sans-I/O encoder and a
// validating decoder (docs/ARCHITECTURE.md, "Host ↔ guest agent protocol").
//
// Both ends link this library: the host (AgentSession) and the guest agent,
// a static binary running as PID 1. So it depends on the C++ standard library
// only — no Boost, no Asio, no logging — and never touches a socket, clock or
// file: bytes in, messages out, and back.
//
// Wire format (all integers little-endian, no padding, no alignment):
//
//   frame   := header payload
//   header  := u32 payload_len   (≤ kMaxPayload; checked before any byte of the payload is read)
//              u8  wire_version  (== kWireVersion; anything else ends the stream)
//              u8  type          (MessageType; unknown or wrong-direction types end the stream)
//              u16 reserved      (must be 0)
//   payload := the fields of `type`, in the order listed below, with nothing after them
//
//   u8/u16/u32/i32  fixed width, little-endian
//   bool            u8, 0 or 1
//   bytes           u32 length, then that many bytes        (stdio chunks)
//   str             u16 length, then that many bytes; no NUL  (text; per-field cap)
//   list<T>         u16 count, then count × T               (per-field cap on the count)
//   ipaddr          u8 family (0 none, 4, 6), then 0, 4 or 16 address bytes (network order)
//
// host → guest (types 0x01–0x3f)                  guest → host (types 0x41–0x7f)
//   01 Hello      u16 protocol_version            41 Ready     u16 protocol_version, str agent_version,
//   02 NetConfig  see NetConfig below                          str kernel_release, u32 uptime_ms
//   03 Run        list<str> argv, list<str> env,  42 Stdout    bytes data
//                 str cwd, bool tty, u16 rows,    43 Stderr    bytes data
//                 u16 cols, str user (v3)         44 Exited    u8 kind (0 exited, 1 killed by signal),
//   04 Stdin      bytes data                                   i32 value (status 0–255 | signal 1–64),
//   05 StdinEof   —                                            bool core_dumped
//   06 Signal     i32 signo (1–64)                45 ListenerAppeared  u8 proto, ipaddr addr, u16 port,
//   07 Resize     u16 rows, u16 cols                                    bool v6only
//   08 (reserved: was ConnectGuestPort,           46 ListenerGone      same fields
//       never sent; relays use relay.hpp)         47 Log       str text
//   09 Shutdown   —                               48 Error     str text
//   0a MirrorApply  u32 generation, state desired 49 MirrorReport u32 generation, bool converged,
//                   (v2; ≤ kMaxMirrorPayload)                   bool read_failed, u32 changes, u16 passes,
//   0b DnsConfig  list<ipaddr> servers,                         list<OpError{str op, str error}> errors,
//                 list<str> search (v3)                         u32 errors_total, state actual,
//                                                               list<str> unmanaged   (v2; ≤ kMaxMirrorPayload)
//
//   state  := list<Link{i32 ifindex, str name, bool has_mac, [6 bytes mac], u32 mtu, u32 flags, str kind}>,
//             list<Address{str link, ipaddr local, ipaddr peer (may be none), u8 prefix_len,
//                          ipaddr broadcast (may be none), u32 flags, u8 scope, u32 preferred_lifetime}>,
//             list<Route{u8 family (4, 6), u32 table, u8 type, ipaddr dst, u8 dst_len, u8 tos,
//                        u32 priority, u8 scope, u8 protocol, ipaddr pref_src (may be none), u32 mtu,
//                        u32 flags, list<NextHop{str link, ipaddr gateway (may be none), u32 flags}>}>
//     mirrored mode's NetState (netstack/mirror/plan.hpp, std-only: both ends share the one
//     definition the plan and diff work on). Caps: kMaxMirrorLinks links, kMaxMirrorAddresses
//     addresses, kMaxMirrorRoutes routes, kMaxNextHops next hops per route; link names are
//     1–15 bytes (IFNAMSIZ - 1) without NUL, '/', whitespace or ':', and every address or next
//     hop names a link of the same state; families and prefix lengths agree.
//
//   NetConfig := bool dhcp, u32 mtu (0 = leave as is), bool ipv6, bool internal (v2),
//                list<Address{ipaddr addr, u8 prefix_len}>,
//                list<Route{ipaddr dst, u8 prefix_len, ipaddr gateway (may be none), u32 metric}>,
//                list<ipaddr> dns_servers, list<str> search_domains
//
// Conversation (either side may send Log/Error at any time; Error is informational):
//   host: Hello, NetConfig, Run, [Stdin…, StdinEof, Signal, Resize, MirrorApply, DnsConfig]…, Shutdown
//   MirrorApply (mirrored mode) may come at any time after Hello; the agent answers each with
//   one MirrorReport of the same generation, in order.
//   DnsConfig (v3) may come at any time after Hello: the agent rewrites /etc/resolv.conf with
//   its servers and search domains (the host's search domains changed); no answer.
//   guest: Ready, [Stdout|Stderr]…, Exited  — the agent drains the command's output before
//          Exited, so Exited is the last output message.
// Each side sends its greeting as soon as the stream is up (no round trip before it) and
// rejects the other's if the protocol version differs. The network is configured before the
// command runs: from the NetConfig if one arrives before Run, else by DHCP.
//
// Sessions (v3). The MAIN session is the stream the agent opens to the host's vsock port
// kAgentVsockPort at boot; it carries NetConfig, MirrorApply, DnsConfig and every listener
// report. It may carry no Run at all ("instance mode"): the agent then keeps it open, with no
// timeout, until the host's Shutdown, which powers the VM off cleanly. Once the main session
// has had its Hello, the agent also accepts EXEC sessions: streams the host opens to the
// guest's vsock port kAgentExecPort. Each speaks this same protocol for one command —
//   host: Hello, Run, [Stdin…, StdinEof, Signal, Resize]…, Shutdown (or close)
//   guest: Ready, [Stdout|Stderr]…, Exited
// — and carries no network messages (NetConfig/MirrorApply/DnsConfig there are answered with
// Error and ignored); listeners the command opens are reported on the main session. Shutdown
// on an exec session ends that session only.
//
// Run.user (v3): the account the command runs as, by name (or a numeric uid when no name
// matches), looked up in the guest's /etc/passwd; "" = the guest's default user
// (/etc/wsl.conf [user] default=, else root). An unknown user gets an Error naming it and an
// Exited with status 1.
//
// Validation (the guest is untrusted; so, for the agent, is anything but the host): every
// length and count is checked against the bytes present and against a per-field cap before
// anything is allocated; enumerated values, signal numbers, exit statuses, prefix lengths
// and address families are range-checked; strings destined for execve() contain no NUL and
// env entries contain '='. The first violation makes the Decoder report a ProtocolError and
// stop — a length-prefixed stream cannot be resynchronised — and the caller ends the stream.
// Nothing here throws on bad input, asserts on it, or allocates more than kMaxPayload for it.
//
// Thread safety: the functions are pure; a Decoder is confined to its caller.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "netstack/mirror/plan.hpp"

namespace causeway::agent {

// ---------------------------------------------------------------- limits
constexpr uint8_t kWireVersion = 1;  // frame layout
// Message set and semantics (Hello / Ready); 2: mirrored mode; 3: Run.user, DnsConfig, exec sessions.
constexpr uint16_t kProtocolVersion = 3;
constexpr size_t kHeaderSize = 8;
constexpr size_t kMaxChunk = 32 * 1024;                // stdio bytes per Stdin/Stdout/Stderr message
constexpr size_t kMaxPayload = 128 * 1024;             // one frame's payload; a Run with its env fits
constexpr size_t kMaxMirrorPayload = 2 * 1024 * 1024;  // MirrorApply/MirrorReport: a full plan at its caps fits
constexpr size_t kMaxMirrorLinks = 64;                 // = netstack::mirror::kMaxLinks
constexpr size_t kMaxMirrorAddresses = 16384;          // kMaxLinks × kMaxAddressesPerLink
constexpr size_t kMaxMirrorRoutes = 4096;              // = netstack::mirror::kMaxRoutes
constexpr size_t kMaxNextHops = 32;                    // per multipath route
constexpr size_t kMaxLinkName = 15;                    // IFNAMSIZ - 1
constexpr size_t kMaxLinkKind = 32;
constexpr size_t kMaxMirrorErrors = 32;       // = netstack::mirror::kMaxErrorsKept
constexpr size_t kMaxMirrorErrorText = 1024;  // per op / error string
constexpr size_t kMaxUnmanagedLinks = 256;
constexpr size_t kMaxArgs = 1024;         // argv entries
constexpr size_t kMaxEnv = 1024;          // env entries
constexpr size_t kMaxArgLen = 16 * 1024;  // one argv/env entry, bytes
constexpr size_t kMaxPathLen = 4096;      // cwd (PATH_MAX)
constexpr size_t kMaxTextLen = 4096;      // Log / Error text
constexpr size_t kMaxVersionLen = 256;    // agent version, kernel release
constexpr size_t kMaxUserLen = 256;       // Run.user (useradd allows 32; NAME_REGEX may allow more)
constexpr size_t kMaxAddresses = 64;      // NetConfig addresses
constexpr size_t kMaxRoutes = 256;        // NetConfig routes
constexpr size_t kMaxDnsServers = 8;      // resolv.conf uses 3 (MAXNS); the rest are ignored there
constexpr size_t kMaxSearchDomains = 6;   // resolv.conf MAXDNSRCH
constexpr size_t kMaxDomainLen = 253;     // RFC 1035 §2.3.4, as text
constexpr uint32_t kMaxMtu = 65535;
constexpr int kMaxSignal = 64;  // _NSIG - 1 on Linux

// The vsock port the agent connects to on the host (CID 2). Kernel parameter
// cw.agent.port=N overrides it.
constexpr uint32_t kAgentVsockPort = 1024;
// The vsock port the agent listens on (in the guest) for exec sessions (see "Sessions").
constexpr uint32_t kAgentExecPort = 1026;

// ---------------------------------------------------------------- values
struct IpAddr {
  uint8_t family = 0;               // 0 none, 4, 6
  std::array<uint8_t, 16> bytes{};  // network order; first 4 used for IPv4

  static IpAddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return {4, {a, b, c, d}}; }
  // inet_pton for either family; nullopt if `text` is neither.
  static std::optional<IpAddr> parse(std::string_view text);
  [[nodiscard]] std::string to_string() const;  // "" for none
  [[nodiscard]] bool none() const { return family == 0; }
  friend bool operator==(const IpAddr&, const IpAddr&) = default;
};

enum class IpProto : uint8_t { Tcp = 6, Udp = 17 };

// ---------------------------------------------------------------- host → guest
struct Hello {
  uint16_t version = kProtocolVersion;
  friend bool operator==(const Hello&, const Hello&) = default;
};

struct NetAddress {
  IpAddr addr;
  uint8_t prefix_len = 0;
  friend bool operator==(const NetAddress&, const NetAddress&) = default;
};

struct NetRoute {
  IpAddr dst;  // 0.0.0.0 or :: with prefix_len 0 = default route
  uint8_t prefix_len = 0;
  IpAddr gateway;  // none = on-link
  uint32_t metric = 0;
  friend bool operator==(const NetRoute&, const NetRoute&) = default;
};

// The guest's first Ethernet link (eth0). The NAT case is one IPv4 address,
// one default route and the gateway as DNS server; mirrored mode fills the
// same lists with the host's addresses and routes.
struct NetConfig {
  bool dhcp = false;  // ignore the rest and run DHCP (the engine serves it)
  uint32_t mtu = 0;   // 0: leave the link's MTU alone
  bool ipv6 = false;  // false: disable IPv6 on the link
  // Mirrored mode: the NAT link is internal — addresses with link scope (never a
  // source for other links' traffic), no default route; it carries DNS, the host
  // alias and forwards only. The mirrored links carry the rest.
  bool internal = false;
  std::vector<NetAddress> addresses;
  std::vector<NetRoute> routes;
  std::vector<IpAddr> dns_servers;
  std::vector<std::string> search_domains;
  friend bool operator==(const NetConfig&, const NetConfig&) = default;
};

struct Run {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> env;   // "NAME=value"; the whole environment of the command
  std::string cwd;                // "" = "/"
  bool tty = false;               // pty (interactive) or three pipes
  uint16_t rows = 0, cols = 0;    // initial terminal size (tty only; 0 = leave)
  std::string user;               // v3: account name (or uid); "" = the guest's default user
  friend bool operator==(const Run&, const Run&) = default;
};

struct Stdin {
  std::vector<uint8_t> data;  // ≤ kMaxChunk
  friend bool operator==(const Stdin&, const Stdin&) = default;
};
struct StdinEof {
  friend bool operator==(const StdinEof&, const StdinEof&) = default;
};
struct Signal {
  int32_t signo = 0;  // delivered to the command's process group
  friend bool operator==(const Signal&, const Signal&) = default;
};
struct Resize {
  uint16_t rows = 0, cols = 0;
  friend bool operator==(const Resize&, const Resize&) = default;
};
struct Shutdown {
  friend bool operator==(const Shutdown&, const Shutdown&) = default;
};

// Mirrored mode: the desired state of the guest's mirrored links (the plan).
struct MirrorApply {
  uint32_t generation = 0;  // echoed in the report
  netstack::mirror::NetState desired;
  friend bool operator==(const MirrorApply&, const MirrorApply&) = default;
};

// v3: the guest's resolver configuration changed (the host's search domains, its servers):
// the agent rewrites /etc/resolv.conf. Validated like NetConfig's DNS lists.
struct DnsConfig {
  std::vector<IpAddr> servers;      // ≤ kMaxDnsServers
  std::vector<std::string> search;  // ≤ kMaxSearchDomains, each 1–kMaxDomainLen bytes, no whitespace
  friend bool operator==(const DnsConfig&, const DnsConfig&) = default;
};

// ---------------------------------------------------------------- guest → host
struct MirrorOpError {
  std::string op;
  std::string error;
  friend bool operator==(const MirrorOpError&, const MirrorOpError&) = default;
};
// The answer to one MirrorApply: what the agent's converge loop did and the
// managed state it left (netstack/mirror/converge.hpp).
struct MirrorReport {
  uint32_t generation = 0;
  bool converged = false;
  bool read_failed = false;
  uint32_t changes = 0;
  uint16_t passes = 0;
  std::vector<MirrorOpError> errors;  // ≤ kMaxMirrorErrors
  uint32_t errors_total = 0;
  netstack::mirror::NetState actual;
  std::vector<std::string> unmanaged;  // guest links mirrored mode leaves alone (lo, eth0)
  friend bool operator==(const MirrorReport&, const MirrorReport&) = default;
};

struct Ready {
  uint16_t version = kProtocolVersion;
  std::string agent_version;
  std::string kernel_release;
  uint32_t uptime_ms = 0;  // guest uptime when the agent sent Ready (boot-time measurements)
  friend bool operator==(const Ready&, const Ready&) = default;
};
struct Stdout {
  std::vector<uint8_t> data;
  friend bool operator==(const Stdout&, const Stdout&) = default;
};
struct Stderr {
  std::vector<uint8_t> data;
  friend bool operator==(const Stderr&, const Stderr&) = default;
};
struct Exited {
  enum class Kind : uint8_t { Exited = 0, Signaled = 1 };
  Kind kind = Kind::Exited;
  int32_t value = 0;  // exit status 0–255, or the signal number
  bool core_dumped = false;
  // The shell convention: status, or 128 + signal.
  [[nodiscard]] int shell_status() const { return kind == Kind::Exited ? value : 128 + value; }
  friend bool operator==(const Exited&, const Exited&) = default;
};
struct Listener {
  IpProto proto = IpProto::Tcp;
  IpAddr addr;  // family 4 or 6
  uint16_t port = 0;
  bool v6only = false;
  friend bool operator==(const Listener&, const Listener&) = default;
};
struct ListenerAppeared : Listener {
  friend bool operator==(const ListenerAppeared&, const ListenerAppeared&) = default;
};
struct ListenerGone : Listener {
  friend bool operator==(const ListenerGone&, const ListenerGone&) = default;
};
struct Log {
  std::string text;
  friend bool operator==(const Log&, const Log&) = default;
};
struct Error {
  std::string text;
  friend bool operator==(const Error&, const Error&) = default;
};

using Message = std::variant<Hello, NetConfig, Run, Stdin, StdinEof, Signal, Resize, Shutdown, MirrorApply, DnsConfig,
                             Ready, Stdout, Stderr, Exited, ListenerAppeared, ListenerGone, Log, Error, MirrorReport>;

enum class MessageType : uint8_t {
  Hello = 0x01,
  NetConfig = 0x02,
  Run = 0x03,
  Stdin = 0x04,
  StdinEof = 0x05,
  Signal = 0x06,
  Resize = 0x07,
  Shutdown = 0x09,
  MirrorApply = 0x0a,
  DnsConfig = 0x0b,
  Ready = 0x41,
  Stdout = 0x42,
  Stderr = 0x43,
  Exited = 0x44,
  ListenerAppeared = 0x45,
  ListenerGone = 0x46,
  Log = 0x47,
  Error = 0x48,
  MirrorReport = 0x49,
};

// Who sent a message. A decoder accepts one direction only: the host never
// accepts a Run, the guest never accepts a Stdout.
enum class Direction : uint8_t { HostToGuest, GuestToHost };

[[nodiscard]] MessageType type_of(const Message& m);
[[nodiscard]] Direction direction_of(MessageType t);
[[nodiscard]] std::string_view name_of(MessageType t);
// The largest payload a frame of type `t` may carry (kMaxPayload, or kMaxMirrorPayload).
[[nodiscard]] size_t max_payload(MessageType t);

// ---------------------------------------------------------------- errors
enum class ProtocolError {
  Ok = 0,
  Oversized,       // payload_len > kMaxPayload
  BadVersion,      // wire_version != kWireVersion
  BadReserved,     // reserved header bits set
  UnknownType,     // type not in MessageType
  WrongDirection,  // a type the other side sends
  Truncated,       // a field runs past the end of the payload
  TrailingBytes,   // bytes after the last field
  FieldTooLong,    // a string/bytes field over its cap
  TooMany,         // a list count over its cap
  BadValue,        // out-of-range enum/number, NUL in a string, env entry without '=', ...
};
const std::error_category& protocol_category();
inline std::error_code make_error_code(ProtocolError e) { return {static_cast<int>(e), protocol_category()}; }

// ---------------------------------------------------------------- encode
// Checks `m` against the limits its receiver enforces. Anything built from
// user input (argv, env, a long cwd) must pass this before encode().
[[nodiscard]] std::error_code validate(const Message& m);

// Appends the frame for `m` to `out`. `m` must satisfy validate() — a message
// over the limits is a bug of the caller and aborts (it would only be
// rejected by the receiver). Stdio larger than kMaxChunk: use encode_chunks.
void encode_into(const Message& m, std::vector<uint8_t>& out);
[[nodiscard]] std::vector<uint8_t> encode(const Message& m);
// Like encode_into, for messages built from state the sender does not bound
// itself (a mirrored plan, the guest's read-back state): an invalid or
// oversized message appends nothing and returns the error instead of aborting.
[[nodiscard]] std::error_code encode_checked(const Message& m, std::vector<uint8_t>& out);
// The semantic rules of a mirrored state (see "state" above): link names, the
// links that addresses and next hops name, families, prefix lengths, caps.
[[nodiscard]] std::error_code check_mirror_state(const netstack::mirror::NetState& s);

// Appends as many Stdin/Stdout/Stderr frames as it takes to carry `data`
// (kMaxChunk each; nothing for empty data).
void encode_chunks(MessageType type, std::span<const uint8_t> data, std::vector<uint8_t>& out);

// ---------------------------------------------------------------- decode
// Turns a byte stream into messages of one direction.
//
//   decoder.feed(bytes);
//   while (auto m = decoder.next()) handle(*m);
//   if (decoder.error()) { report; end the stream; }
//
// Memory: the buffer holds at most one frame (kHeaderSize + kMaxPayload)
// plus whatever one feed() delivered beyond it; a frame's declared length is
// checked before its payload is awaited, so a hostile header costs nothing.
class Decoder {
 public:
  explicit Decoder(Direction accept) : accept_(accept) {}

  void feed(std::span<const uint8_t> bytes);
  // The next complete message; nullopt when more bytes are needed or the
  // stream is broken (then error() says why, and stays set).
  std::optional<Message> next();
  [[nodiscard]] std::error_code error() const { return error_; }
  // Bytes of an incomplete frame held: non-zero at end of stream means the
  // peer stopped mid-message.
  [[nodiscard]] size_t buffered() const { return buf_.size() - pos_; }
  [[nodiscard]] uint64_t messages() const { return messages_; }

 private:
  Direction accept_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;  // start of the first unconsumed frame in buf_
  std::error_code error_;
  uint64_t messages_ = 0;
};

// Decodes one payload of `type` (the bytes after the header). Exposed for
// fuzzing and tests; Decoder uses it.
[[nodiscard]] std::optional<Message> decode_payload(MessageType type, std::span<const uint8_t> payload,
                                                    std::error_code& ec);

}  // namespace causeway::agent

template <>
struct std::is_error_code_enum<causeway::agent::ProtocolError> : std::true_type {};
