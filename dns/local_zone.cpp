#include "dns/local_zone.hpp"

#include <arpa/inet.h>

#include <string>

#include "dns/wire.hpp"

namespace causeway::dns {
namespace {

constexpr std::string_view kHostLabel = "host";
constexpr std::string_view kGatewayLabel = "gateway";

struct Records {
  std::optional<in_addr> v4;
  std::optional<in6_addr> v6;
};

void append_rr_header(std::vector<uint8_t>& out, uint16_t type, uint32_t ttl, uint16_t rdlength) {
  append_u16(out, 0xc000 | kHeaderSize);  // RFC 1035 §4.1.4: the owner is the question's name
  append_u16(out, type);
  append_u16(out, kClassIn);
  append_u32(out, ttl);
  append_u16(out, rdlength);
}

// The zone's SOA (RFC 1035 §3.3.13), owned by the apex.
void append_soa(std::vector<uint8_t>& out) {
  const std::string apex(LocalZone::kZone);
  append_name(out, apex);
  append_u16(out, rrtype::kSoa);
  append_u16(out, kClassIn);
  append_u32(out, LocalZone::kNegativeTtl);
  const size_t rdlength_at = out.size();
  append_u16(out, 0);
  append_name(out, apex);                    // MNAME
  append_name(out, "hostmaster." + apex);    // RNAME
  append_u32(out, 1);                        // SERIAL
  append_u32(out, 3600);                     // REFRESH
  append_u32(out, 600);                      // RETRY
  append_u32(out, 86400);                    // EXPIRE
  append_u32(out, LocalZone::kNegativeTtl);  // MINIMUM: the negative-caching TTL
  const size_t rdlength = out.size() - rdlength_at - 2;
  out[rdlength_at] = static_cast<uint8_t>(rdlength >> 8);
  out[rdlength_at + 1] = static_cast<uint8_t>(rdlength);
}

// RFC 6891 §6.1.2: root owner, TYPE 41, CLASS = our UDP size, TTL 0 (rcode
// extension 0, version 0, DO clear), no options.
void append_opt(std::vector<uint8_t>& out) {
  out.push_back(0);
  append_u16(out, rrtype::kOpt);
  append_u16(out, LocalZone::kEdnsUdpSize);
  append_u32(out, 0);
  append_u16(out, 0);
}

}  // namespace

LocalZoneAddresses LocalZoneAddresses::nat_defaults() {
  LocalZoneAddresses a;
  in_addr v4{};
  v4.s_addr = htonl(0x0a000202);  // 10.0.2.2
  in6_addr v6{};
  v6.s6_addr[0] = 0xfd;
  v6.s6_addr[15] = 0x02;  // fd00::2
  a.host_v4 = a.gateway_v4 = v4;
  a.host_v6 = a.gateway_v6 = v6;
  return a;
}

bool LocalZone::in_zone(std::string_view name) { return name_in_domain(name, kZone); }

std::optional<std::vector<uint8_t>> LocalZone::answer(std::span<const uint8_t> query) const {
  const QueryCheck q = validate_query(query);
  if (!q.ok() || q.header.opcode() != kOpcodeQuery) return std::nullopt;
  const std::string& name = q.question.name;
  if (!in_zone(name)) return std::nullopt;
  if (q.question.qclass != kClassIn && q.question.qclass != kClassAny)
    return make_error_response(query, Rcode::kRefused);

  const std::string_view sub =
      name == kZone ? std::string_view{} : std::string_view(name).substr(0, name.size() - kZone.size() - 1);
  const bool apex = sub.empty();
  std::optional<Records> records;
  if (sub == kHostLabel) records = Records{addr_.host_v4, addr_.host_v6};
  if (sub == kGatewayLabel) records = Records{addr_.gateway_v4, addr_.gateway_v6};
  const bool exists = apex || records.has_value();

  const uint16_t qtype = q.question.qtype;
  const bool any = qtype == rrtype::kAny;
  std::vector<uint8_t> answers;
  uint16_t ancount = 0;
  if (records && (qtype == rrtype::kA || any) && records->v4) {
    append_rr_header(answers, rrtype::kA, kTtl, 4);
    const auto* b = reinterpret_cast<const uint8_t*>(&records->v4->s_addr);  // SAFETY: in_addr is 4 bytes
    answers.insert(answers.end(), b, b + 4);
    ++ancount;
  }
  if (records && (qtype == rrtype::kAaaa || any) && records->v6) {
    append_rr_header(answers, rrtype::kAaaa, kTtl, 16);
    answers.insert(answers.end(), records->v6->s6_addr, records->v6->s6_addr + 16);
    ++ancount;
  }
  const bool soa_answer = apex && (qtype == rrtype::kSoa || any);

  std::vector<uint8_t> out;
  out.reserve(q.question.end + answers.size() + 96);
  append_u16(out, q.header.id);
  const Rcode rcode = exists ? Rcode::kNoError : Rcode::kNxDomain;
  append_u16(out, static_cast<uint16_t>(kFlagQr | kFlagAa | (q.header.flags & kFlagRd) | kFlagRa |
                                        static_cast<uint16_t>(rcode)));
  const bool negative = ancount == 0 && !soa_answer;
  append_u16(out, 1);
  append_u16(out, static_cast<uint16_t>(ancount + (soa_answer ? 1 : 0)));
  append_u16(out, negative ? 1 : 0);
  append_u16(out, q.edns ? 1 : 0);
  if (!append_question_copy(out, query)) return std::nullopt;  // validated above: cannot happen
  out.insert(out.end(), answers.begin(), answers.end());
  if (soa_answer || negative) append_soa(out);
  if (q.edns) append_opt(out);
  return out;
}

}  // namespace causeway::dns
