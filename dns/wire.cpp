#include "dns/wire.hpp"

namespace causeway::dns {
namespace {

uint16_t load_u16(std::span<const uint8_t> msg, size_t at) {
  return static_cast<uint16_t>((msg[at] << 8) | msg[at + 1]);
}

void store_u16(std::span<uint8_t> msg, size_t at, uint16_t v) {
  msg[at] = static_cast<uint8_t>(v >> 8);
  msg[at + 1] = static_cast<uint8_t>(v);
}

// Presentation form of one label byte (RFC 1035 §5.1), lower-cased.
void append_label_byte(std::string& out, uint8_t c) {
  if (c >= 'A' && c <= 'Z') {
    out.push_back(static_cast<char>(c - 'A' + 'a'));  // RFC 4343 §3: ASCII case only
  } else if (c == '.' || c == '\\') {
    out.push_back('\\');
    out.push_back(static_cast<char>(c));
  } else if (c <= 0x20 || c >= 0x7f) {
    out.push_back('\\');
    out.push_back(static_cast<char>('0' + c / 100));
    out.push_back(static_cast<char>('0' + (c / 10) % 10));
    out.push_back(static_cast<char>('0' + c % 10));
  } else {
    out.push_back(static_cast<char>(c));
  }
}

// Skips one resource record at `off` (RFC 1035 §4.1.3). Returns an error text
// or nullptr; on success `off` is past the RDATA and `type`/`cls_off` tell
// what it was.
const char* skip_rr(std::span<const uint8_t> msg, size_t& off, uint16_t& type, size_t& class_off) {
  size_t next = 0;
  if (const char* why = read_name(msg, off, nullptr, next)) return why;
  if (msg.size() - next < kRrFixedSize) return "record runs past the end";
  type = load_u16(msg, next);
  class_off = next + 2;
  const uint16_t rdlength = load_u16(msg, next + 8);
  if (msg.size() - next - kRrFixedSize < rdlength) return "record data runs past the end";
  off = next + kRrFixedSize + rdlength;
  return nullptr;
}

Edns edns_at(std::span<const uint8_t> msg, size_t class_off) {
  Edns e;
  e.class_offset = class_off;
  e.udp_payload_size = load_u16(msg, class_off);
  // RFC 6891 §6.1.3: TTL = EXTENDED-RCODE(8) VERSION(8) DO(1) Z(15).
  e.version = msg[class_off + 3];
  e.dnssec_ok = (msg[class_off + 4] & 0x80) != 0;
  return e;
}

}  // namespace

std::string_view to_string(Rcode r) {
  switch (r) {
    case Rcode::kNoError: return "NOERROR";
    case Rcode::kFormErr: return "FORMERR";
    case Rcode::kServFail: return "SERVFAIL";
    case Rcode::kNxDomain: return "NXDOMAIN";
    case Rcode::kNotImp: return "NOTIMP";
    case Rcode::kRefused: return "REFUSED";
  }
  return "RCODE?";
}

std::string_view to_string(QueryVerdict v) {
  switch (v) {
    case QueryVerdict::kOk: return "ok";
    case QueryVerdict::kFormErr: return "formerr";
    case QueryVerdict::kDrop: return "drop";
  }
  return "?";
}

std::optional<Header> parse_header(std::span<const uint8_t> msg) {
  if (msg.size() < kHeaderSize) return std::nullopt;
  Header h;
  h.id = load_u16(msg, 0);
  h.flags = load_u16(msg, 2);
  h.qdcount = load_u16(msg, 4);
  h.ancount = load_u16(msg, 6);
  h.nscount = load_u16(msg, 8);
  h.arcount = load_u16(msg, 10);
  return h;
}

const char* read_name(std::span<const uint8_t> msg, size_t offset, std::string* name, size_t& next) {
  if (name) name->clear();
  size_t pos = offset;
  size_t segment_start = offset;  // pointers must land strictly before this
  size_t wire_length = 0;
  size_t hops = 0;
  bool jumped = false;
  for (;;) {
    if (pos >= msg.size()) return "name runs past the end";
    const uint8_t len = msg[pos];
    switch (len & 0xc0) {
      case 0xc0: {  // RFC 1035 §4.1.4: a pointer to a prior occurrence of a name
        if (msg.size() - pos < 2) return "compression pointer runs past the end";
        const size_t target = static_cast<size_t>(((len & 0x3f) << 8) | msg[pos + 1]);
        // Strictly before the segment we are in: the chain only moves
        // backwards, so it cannot loop (a "loop" pointer fails here).
        if (target >= segment_start) return "compression pointer does not point backwards";
        if (++hops > kMaxPointerHops) return "too many compression pointers";
        if (!jumped) {
          next = pos + 2;
          jumped = true;
        }
        pos = segment_start = target;
        continue;
      }
      case 0x00: break;
      default:  // 0x40 and 0x80: extended label types (RFC 6891 §5), none in use
        return "label longer than 63 bytes";
    }
    if (len == 0) {
      if (!jumped) next = pos + 1;
      return nullptr;
    }
    // RFC 1035 §2.3.4: 255 bytes including every length byte and the root.
    wire_length += 1 + static_cast<size_t>(len);
    if (wire_length + 1 > kMaxNameLength) return "name longer than 255 bytes";
    if (msg.size() - pos - 1 < len) return "label runs past the end";
    if (name) {
      if (!name->empty()) name->push_back('.');
      for (size_t i = 0; i < len; ++i) append_label_byte(*name, msg[pos + 1 + i]);
    }
    pos += 1 + static_cast<size_t>(len);
  }
}

QueryCheck validate_query(std::span<const uint8_t> msg) {
  QueryCheck c;
  const auto header = parse_header(msg);
  if (!header) {
    c.reason = "shorter than a DNS header";
    return c;
  }
  c.header = *header;
  if (header->qr()) {
    c.reason = "a response, not a query";
    return c;
  }
  c.verdict = QueryVerdict::kFormErr;
  if (msg.size() > kMaxMessageSize) {
    c.reason = "longer than 65535 bytes";
    return c;
  }
  if (header->qdcount == 0) {
    c.reason = "no question";
    return c;
  }
  if (header->qdcount > 1) {  // RFC 9619 §3
    c.reason = "more than one question";
    return c;
  }
  // Each question needs at least 5 bytes (root name + QTYPE + QCLASS) and
  // each record 11 (root name + fixed part): refuse counts the size cannot
  // hold before walking anything.
  const size_t records = size_t{header->ancount} + header->nscount + header->arcount;
  if (kHeaderSize + (1 + kQuestionFixedSize) * header->qdcount + (1 + kRrFixedSize) * records > msg.size()) {
    c.reason = "section counts larger than the message";
    return c;
  }
  size_t off = 0;
  if (const char* why = read_name(msg, kHeaderSize, &c.question.name, off)) {
    c.reason = why;
    return c;
  }
  if (msg.size() - off < kQuestionFixedSize) {
    c.reason = "question runs past the end";
    return c;
  }
  c.question.qtype = load_u16(msg, off);
  c.question.qclass = load_u16(msg, off + 2);
  c.question.end = off + kQuestionFixedSize;
  off = c.question.end;
  for (size_t i = 0; i < records; ++i) {
    uint16_t type = 0;
    size_t class_off = 0;
    const size_t rr_start = off;
    if (const char* why = skip_rr(msg, off, type, class_off)) {
      c.reason = why;
      return c;
    }
    if (type == rrtype::kOpt) {
      // RFC 6891 §6.1.1: one OPT, in the additional section, owned by the root.
      if (i < size_t{header->ancount} + header->nscount) {
        c.reason = "OPT record outside the additional section";
        return c;
      }
      if (c.edns) {
        c.reason = "more than one OPT record";
        return c;
      }
      if (msg[rr_start] != 0) {
        c.reason = "OPT record not owned by the root";
        return c;
      }
      c.edns = edns_at(msg, class_off);
    }
  }
  c.verdict = QueryVerdict::kOk;
  c.reason = {};
  return c;
}

std::optional<std::string> question_name(std::span<const uint8_t> msg) {
  const auto header = parse_header(msg);
  if (!header || header->qdcount == 0) return std::nullopt;
  std::string name;
  size_t next = 0;
  if (read_name(msg, kHeaderSize, &name, next) != nullptr) return std::nullopt;
  return name;
}

std::optional<Edns> find_edns(std::span<const uint8_t> msg) {
  const auto header = parse_header(msg);
  if (!header) return std::nullopt;
  size_t off = kHeaderSize;
  for (size_t i = 0; i < header->qdcount; ++i) {
    size_t next = 0;
    if (read_name(msg, off, nullptr, next) != nullptr) return std::nullopt;
    if (msg.size() - next < kQuestionFixedSize) return std::nullopt;
    off = next + kQuestionFixedSize;
  }
  const size_t before_additional = size_t{header->ancount} + header->nscount;
  const size_t records = before_additional + header->arcount;
  for (size_t i = 0; i < records; ++i) {
    uint16_t type = 0;
    size_t class_off = 0;
    if (skip_rr(msg, off, type, class_off) != nullptr) return std::nullopt;
    if (type == rrtype::kOpt && i >= before_additional) return edns_at(msg, class_off);
  }
  return std::nullopt;
}

bool append_question_copy(std::vector<uint8_t>& out, std::span<const uint8_t> query) {
  const auto header = parse_header(query);
  if (!header || header->qdcount == 0) return false;
  std::string name;
  size_t name_end = 0;
  if (read_name(query, kHeaderSize, &name, name_end) != nullptr) return false;
  if (query.size() - name_end < kQuestionFixedSize) return false;
  const size_t question_end = name_end + kQuestionFixedSize;
  bool has_pointer = false;
  for (size_t p = kHeaderSize; p < name_end && query[p] != 0; p += 1 + size_t{query[p]}) {
    if ((query[p] & 0xc0) != 0) {
      has_pointer = true;
      break;
    }
  }
  if (has_pointer) {
    // Compressed into the header (legal, if odd): the pointer would not mean
    // the same in another message, so write the name out.
    if (!append_name(out, name)) return false;
    out.insert(out.end(), query.begin() + static_cast<ptrdiff_t>(name_end),
               query.begin() + static_cast<ptrdiff_t>(question_end));
  } else {
    out.insert(out.end(), query.begin() + kHeaderSize, query.begin() + static_cast<ptrdiff_t>(question_end));
  }
  return true;
}

std::vector<uint8_t> make_error_response(std::span<const uint8_t> query, Rcode rcode) {
  const auto header = parse_header(query);
  if (!header) return {};
  std::vector<uint8_t> out;
  out.reserve(kHeaderSize + 64);
  append_u16(out, header->id);
  append_u16(out, static_cast<uint16_t>(kFlagQr | (header->flags & (0x7800 | kFlagRd)) | kFlagRa |
                                        static_cast<uint16_t>(rcode)));
  append_u16(out, 0);  // QDCOUNT, set below if the question reads cleanly
  append_u16(out, 0);
  append_u16(out, 0);
  append_u16(out, 0);
  if (append_question_copy(out, query)) store_u16(out, 4, 1);  // only one: RFC 9619
  return out;
}

uint16_t get_id(std::span<const uint8_t> msg) { return msg.size() < 2 ? 0 : load_u16(msg, 0); }

void set_id(std::span<uint8_t> msg, uint16_t id) {
  if (msg.size() >= 2) store_u16(msg, 0, id);
}

void set_tc(std::span<uint8_t> msg, bool truncated) {
  if (msg.size() < kHeaderSize) return;
  if (truncated)
    msg[2] = static_cast<uint8_t>(msg[2] | (kFlagTc >> 8));
  else
    msg[2] = static_cast<uint8_t>(msg[2] & ~(kFlagTc >> 8));
}

bool clamp_edns_udp_size(std::span<uint8_t> msg, const Edns& edns, uint16_t max) {
  if (edns.class_offset + 2 > msg.size()) return false;
  if (load_u16(msg, edns.class_offset) <= max) return false;
  store_u16(msg, edns.class_offset, max);
  return true;
}

bool append_name(std::vector<uint8_t>& out, std::string_view name) {
  if (name == ".") name = {};  // the root, written either way
  std::vector<uint8_t> wire;
  std::vector<uint8_t> label;
  auto close_label = [&]() {
    if (label.empty() || label.size() > kMaxLabelLength) return false;
    wire.push_back(static_cast<uint8_t>(label.size()));
    wire.insert(wire.end(), label.begin(), label.end());
    label.clear();
    return true;
  };
  for (size_t i = 0; i < name.size(); ++i) {
    const char ch = name[i];
    if (ch == '.') {
      if (!close_label()) return false;  // empty label ("a..b", ".a")
      continue;
    }
    if (ch == '\\') {  // RFC 1035 §5.1: \X or \DDD
      if (i + 1 >= name.size()) return false;
      if (name[i + 1] >= '0' && name[i + 1] <= '9') {
        if (i + 3 >= name.size()) return false;
        int v = 0;
        for (size_t k = 1; k <= 3; ++k) {
          const char d = name[i + k];
          if (d < '0' || d > '9') return false;
          v = v * 10 + (d - '0');
        }
        if (v > 255) return false;
        label.push_back(static_cast<uint8_t>(v));
        i += 3;
      } else {
        label.push_back(static_cast<uint8_t>(name[i + 1]));
        i += 1;
      }
      continue;
    }
    label.push_back(static_cast<uint8_t>(ch));
  }
  // A trailing unescaped dot ("example.") closed the last label already.
  if (!label.empty() && !close_label()) return false;
  wire.push_back(0);
  if (wire.size() > kMaxNameLength) return false;
  out.insert(out.end(), wire.begin(), wire.end());
  return true;
}

bool name_in_domain(std::string_view name, std::string_view domain) {
  if (domain.empty() || name == domain) return true;
  if (name.size() <= domain.size() || !name.ends_with(domain)) return false;
  const size_t dot = name.size() - domain.size() - 1;
  if (name[dot] != '.') return false;
  size_t backslashes = 0;  // an odd run before the dot escapes it
  for (size_t i = dot; i > 0 && name[i - 1] == '\\'; --i) ++backslashes;
  return backslashes % 2 == 0;
}

void append_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void append_u32(std::vector<uint8_t>& out, uint32_t v) {
  append_u16(out, static_cast<uint16_t>(v >> 16));
  append_u16(out, static_cast<uint16_t>(v));
}

}  // namespace causeway::dns
