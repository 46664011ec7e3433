// DNS wire format: bounds-checked views of a message and the few builders
// the proxy needs. Sans-I/O: bytes in, facts or bytes out.
//
// Theory of operation
// -------------------
// Every query from a guest passes validate_query() before anything else
// (local zone, c-ares, logs) looks at it. The check walks the whole message
// once, RFC 1035 §4.1: the 12-byte header (§4.1.1), exactly one question
// (§4.1.2; RFC 9619 §3 lets a server refuse QDCOUNT > 1 with FORMERR), then
// every resource record of the answer, authority and additional sections
// (§4.1.3) to prove that each name and RDATA fits the message. Names are
// decoded with the rules of §4.1.4 and §2.3.4: a label is at most 63 bytes,
// a name at most 255 bytes on the wire, and a compression pointer must point
// strictly before the segment that contains it, so a chain of pointers
// always moves backwards and terminates (a loop needs a pointer that does
// not). A hop limit bounds the work anyway.
//
// Verdicts: kDrop when there is no header to answer (shorter than 12 bytes)
// or the message is a response (QR set: answering a response invites a
// reflection loop between two resolvers); kFormErr for everything else that
// is wrong, answered with make_error_response(FORMERR); kOk otherwise, with
// the question and the EDNS OPT record (RFC 6891 §6.1) already decoded.
//
// Decoded names are in presentation form, lower-cased (ASCII only, RFC 4343
// §3), without the trailing dot; the root is "". Bytes that would make the
// text ambiguous are escaped as in RFC 1035 §5.1 ("\." for a dot inside a
// label, "\\", and "\DDD" for non-printable bytes), so a label "a.b" can
// never be mistaken for two labels when routing on the name.
//
// Not handled, on purpose: trailing bytes after the last record are
// tolerated (and forwarded as they are), like most servers do; record
// contents (RDATA) are not interpreted beyond their length.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace causeway::dns {

constexpr size_t kHeaderSize = 12;         // RFC 1035 §4.1.1
constexpr size_t kQuestionFixedSize = 4;   // QTYPE + QCLASS, RFC 1035 §4.1.2
constexpr size_t kRrFixedSize = 10;        // TYPE, CLASS, TTL, RDLENGTH, RFC 1035 §4.1.3
constexpr size_t kMaxLabelLength = 63;     // RFC 1035 §2.3.4
constexpr size_t kMaxNameLength = 255;     // RFC 1035 §2.3.4, wire form with length bytes
constexpr size_t kMaxPointerHops = 64;     // ours; a 255-byte name has at most 127 labels
constexpr size_t kMaxMessageSize = 65535;  // RFC 1035 §4.2.2: the TCP length prefix is 16 bits
constexpr size_t kClassicUdpSize = 512;    // RFC 1035 §4.2.1

enum class Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};
std::string_view to_string(Rcode r);

constexpr uint8_t kOpcodeQuery = 0;  // RFC 1035 §4.1.1

// Record types and classes the library names (RFC 1035 §3.2.2, RFC 3596,
// RFC 2782, RFC 6891). Anything else passes through as a number.
namespace rrtype {
constexpr uint16_t kA = 1;
constexpr uint16_t kNs = 2;
constexpr uint16_t kCname = 5;
constexpr uint16_t kSoa = 6;
constexpr uint16_t kPtr = 12;
constexpr uint16_t kMx = 15;
constexpr uint16_t kTxt = 16;
constexpr uint16_t kAaaa = 28;
constexpr uint16_t kSrv = 33;
constexpr uint16_t kOpt = 41;
constexpr uint16_t kAny = 255;
}  // namespace rrtype
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kClassAny = 255;

// Header flag bits (RFC 1035 §4.1.1), in the 16-bit flags word.
constexpr uint16_t kFlagQr = 0x8000;
constexpr uint16_t kFlagAa = 0x0400;
constexpr uint16_t kFlagTc = 0x0200;
constexpr uint16_t kFlagRd = 0x0100;
constexpr uint16_t kFlagRa = 0x0080;

struct Header {
  uint16_t id = 0;
  uint16_t flags = 0;
  uint16_t qdcount = 0;
  uint16_t ancount = 0;
  uint16_t nscount = 0;
  uint16_t arcount = 0;

  [[nodiscard]] bool qr() const { return (flags & kFlagQr) != 0; }
  [[nodiscard]] uint8_t opcode() const { return static_cast<uint8_t>((flags >> 11) & 0xf); }
  [[nodiscard]] bool aa() const { return (flags & kFlagAa) != 0; }
  [[nodiscard]] bool tc() const { return (flags & kFlagTc) != 0; }
  [[nodiscard]] bool rd() const { return (flags & kFlagRd) != 0; }
  [[nodiscard]] bool ra() const { return (flags & kFlagRa) != 0; }
  [[nodiscard]] uint8_t rcode() const { return static_cast<uint8_t>(flags & 0xf); }
};

// The header, or nullopt when the message is shorter than 12 bytes.
std::optional<Header> parse_header(std::span<const uint8_t> msg);

struct Question {
  std::string name;  // presentation form, lower-cased, no trailing dot; root is ""
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  size_t end = 0;  // offset just past QCLASS: [kHeaderSize, end) is the question's bytes
};

// The EDNS(0) OPT pseudo-record of a message (RFC 6891 §6.1.2-6.1.3).
struct Edns {
  uint16_t udp_payload_size = 0;  // the OPT record's CLASS field
  uint8_t version = 0;
  bool dnssec_ok = false;
  size_t class_offset = 0;  // where udp_payload_size sits in the message
};

enum class QueryVerdict {
  kOk,
  kFormErr,  // header readable: answer FORMERR
  kDrop,     // no header, or a response: say nothing
};
std::string_view to_string(QueryVerdict v);

struct QueryCheck {
  QueryVerdict verdict = QueryVerdict::kDrop;
  std::string_view reason;   // static text for logs; empty when kOk
  Header header;             // valid unless kDrop
  Question question;         // valid when kOk
  std::optional<Edns> edns;  // when kOk and the query carries an OPT record
  [[nodiscard]] bool ok() const { return verdict == QueryVerdict::kOk; }
};

// Checks a query from an untrusted client (see the theory of operation).
QueryCheck validate_query(std::span<const uint8_t> msg);

// Decodes the name at `offset` (RFC 1035 §4.1.4). On success sets `name`
// (may be null to only skip) and `next`, the offset just past the name where
// it starts (after the first pointer, if any). Returns an error text or
// nullptr on success.
const char* read_name(std::span<const uint8_t> msg, size_t offset, std::string* name, size_t& next);

// The first question's name (lower-cased presentation form), for routing.
// Checks only what it reads: use on validated queries.
std::optional<std::string> question_name(std::span<const uint8_t> msg);

// The OPT record of a message whose sections are well formed, if any.
std::optional<Edns> find_edns(std::span<const uint8_t> msg);

// An error response to `query`: same id and opcode, QR and RA set, RD copied,
// `rcode`, and the question echoed when it can be read (RFC 1035 §4.1.1;
// for FORMERR the question is omitted if it is what was malformed). Empty
// when `query` has no header.
std::vector<uint8_t> make_error_response(std::span<const uint8_t> query, Rcode rcode);

// Appends the first question of `query` (name, QTYPE, QCLASS) exactly as
// written, case included (0x20-randomising resolvers compare it); a name
// compressed into the header is re-encoded instead. Returns false, appending
// nothing, when the question cannot be read.
bool append_question_copy(std::vector<uint8_t>& out, std::span<const uint8_t> query);

// Message id (RFC 1035 §4.1.1). Both do nothing on messages under 2 bytes.
uint16_t get_id(std::span<const uint8_t> msg);
void set_id(std::span<uint8_t> msg, uint16_t id);

// Sets or clears the TC bit; does nothing on messages without a header.
void set_tc(std::span<uint8_t> msg, bool truncated = true);

// Lowers the OPT record's advertised UDP payload size to `max` if it is
// larger (RFC 6891 §6.2.3 lets a forwarder use its own size). Returns true if
// the message was changed.
bool clamp_edns_udp_size(std::span<uint8_t> msg, const Edns& edns, uint16_t max);

// True when `name` is `domain` or below it, both in the lower-cased
// presentation form above ("" is the root, above everything). A dot escaped
// inside a label ("a\\.corp") is not a label boundary.
bool name_in_domain(std::string_view name, std::string_view domain);

// Appends `name` (presentation form as produced above, "" for the root) in
// uncompressed wire form. Returns false, appending nothing, if it is not a
// valid name (empty label, label over 63 bytes, name over 255 bytes).
bool append_name(std::vector<uint8_t>& out, std::string_view name);

// Big-endian appends, for builders.
void append_u16(std::vector<uint8_t>& out, uint16_t v);
void append_u32(std::vector<uint8_t>& out, uint32_t v);

}  // namespace causeway::dns
